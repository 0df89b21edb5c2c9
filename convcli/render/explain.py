"""The text of ``convcli explain``: ``core.explain``'s dict in aligned lines (plain, no markup)."""

from __future__ import annotations

from typing import Any

from convcli.core.explain import number_text as _num


def _interior_words(e: dict[str, Any]) -> str:
    first, last = e["interior_rows"]
    if first > last:
        return "every output reaches into the pad"
    if first == 0 and last == e["output_length"] - 1:
        return "every output reads only real samples"
    return f"y[{first}]…y[{last}] read only real samples; the others reach into the pad"


def render(e: dict[str, Any]) -> str:
    """The human text of ``convcli explain`` (plain text, no markup)."""
    sp = e["spec"]
    left, right = e["pads"]
    ex = e["example"]
    sizes = "exactly these sizes" if ex["same_as_asked"] else "same options, smaller sizes"
    pads = f"pad={left}:{right}" if sp["pad"] is not None else f"mode={sp['mode']}"
    opts = (f"{pads}, padding={sp['padding']}, stride={sp['stride']}, "
            f"dilation={sp['dilation']}")
    lines = [
        (f"{e['operation'].capitalize()} of N = {e['input_length']} samples with "
         f"k = {e['taps']} taps ({opts})"),
        "",
        f"  what        {e['operation_words']}",
        f"  span        K = d·(k−1)+1 = {e['span']}",
        f"  pads        left {left}, right {right} (padded length {e['padded_length']})",
        f"  length      L_out = {e['length_formula']}",
        f"  formula     {e['formula']}    for i = 0…{e['output_length'] - 1}",
        f"  pad value   x[m] for m < 0 or m ≥ N is {e['pad_value']}",
        *([] if e["bias"] is None else
          [(f"  bias        b = {_num(e['bias'])} is added to every y[i] after the sum "
            "(changes neither Jacobian)")]),
        f"  interior    {_interior_words(e)}",
        "",
        "  same numbers as",
    ]
    lines += [f"    {name:7s} {call}" for name, call in e["equivalents"].items()]
    ji, jk = e["jacobian_input"], e["jacobian_kernel"]
    lines += [
        "",
        f"  ∂y/∂x       {ji['structure']}",
        f"              {ji['edges']}; {ji['note']}",
        f"  ∂y/∂w       {jk['shape'][0]} × {jk['shape'][1]}: {jk['entry']}; {jk['structure']}",
        f"  channels    {e['channels']}",
        "",
        (f"  worked example ({sizes}): N = {ex['n']}, k = {ex['k']}, "
         f"pads {ex['pads'][0]}/{ex['pads'][1]}"),
        f"    x = {[_num(v) for v in ex['x']]}".replace("'", ""),
        f"    w = {[_num(v) for v in ex['w']]}   ({ex['w_from']})".replace("'", ""),
    ]
    for i in ex["shown"]:
        lines.append(f"    y[{i}] = {' + '.join(ex['terms'][str(i)])}")
        lines.append(f"    {' ' * len(f'y[{i}]')} = {ex['sums'][str(i)]}")
    lines.append(f"    y = {[_num(v) for v in ex['y']]}".replace("'", ""))
    return "\n".join(lines)

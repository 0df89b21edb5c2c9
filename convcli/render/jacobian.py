"""What ``jacobian`` says about the matrix it computed: its words, a heatmap of its corner, JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: rows, columns of the heatmap shown in the terminal
CORNER = (12, 24)


def picture(result, array, output: str) -> None:
    """``jacobian -o J.png``: the block computed, its axes and colour bar named, its rows and
    columns numbered as in J, titled with the part of J it is."""
    from convcli.render.plots import plot_matrix

    (r0, r1), (c0, c1) = result.rows, result.cols
    full_rows, full_cols = result.full_shape
    of = "∂y/∂x" if result.wrt == "input" else "∂y/∂w"
    block = "" if (r1 - r0, c1 - c0) == (full_rows, full_cols) else f"[{r0}:{r1}, {c0}:{c1}] of "
    plot_matrix(array, output, wrt=result.wrt, origin=(r0, c0),
                title=f"J = {of}: {block}{full_rows:,} × {full_cols:,}")


@dataclass
class JacobianReport:
    """A ``autodiff.jacobian.JacobianResult`` with what the command knows around it."""

    result: Any
    pair: Any
    kernel: Any  # io.kernelfile.KernelRequest
    coefficients: Any
    source: str
    device: Any
    dtype: Any
    engine: Any  # the MethodChoice the engine would make
    output: str | None
    groups: int = 1  # of the whole conv (the pair's own spec has one)

    def lines(self) -> list[str]:
        """The summary lines (rich markup: user text escaped)."""
        from rich.markup import escape

        from convcli.autodiff.jacobian import jacobian_formula
        from convcli.render.reporter import mode_words

        result, pair = self.result, self.pair
        spec, k = pair.spec, pair.weight.shape[-1]
        length_out, width = result.full_shape
        (r0, r1), (c0, c1) = result.rows, result.cols
        block = f"[{r0}:{r1}, {c0}:{c1}] of " if (r1 - r0, c1 - c0) != (length_out, width) else ""
        of = "∂y/∂x" if result.wrt == "input" else "∂y/∂w"
        pair_text = (f"output {pair.output} ← input {pair.input}" if self.coefficients.ndim == 3
                     else f"channel {pair.input}")
        head = (f"J = {of}: {block}{length_out:,} × {width:,} "
                f"({'banded' if self.banded else 'dense'}), {pair_text}, "
                f"{self.kernel.label(self.coefficients)}, "
                f"{'correlate' if spec.correlate else 'convolve'} {mode_words(spec.summary(k))}, "
                f"input {self.source}")
        details = result.details
        how = (f"autograd ({details['autograd']}) in {details['autograd_seconds']:.3f} s"
               if result.method == "autograd" else
               f"closed form in {details['closed_seconds']:.3f} s")
        lines = [escape(head), *map(escape, jacobian_formula(spec, k, result.wrt, self.taps))]
        if pair.bias is not None:
            lines.append(escape(f"bias {float(pair.bias[0]):g} adds a constant to every y[i]: "
                                "J does not depend on it"))
        lines.append(f"computed by {escape(how)} on {self.device} {self.dtype_name}")
        if result.check is not None:
            c = result.check
            other = ("closed form" if result.method == "autograd" else
                     f"autograd ({escape(c.autograd)}) in {details['autograd_seconds']:.3f} s")
            lines.append(f"check: {other}, max |autograd − closed form| "
                         f"{c.max_abs_diff:.3g} {'≤' if c.ok else '>'} tolerance {c.tolerance:.3g}: "
                         f"{'[green]ok[/green]' if c.ok else '[red]MISMATCH[/red]'}")
        return lines

    @property
    def taps(self):
        """The taps of the channel pair's input row (on the host: k numbers)."""
        return self.pair.weight[0, self.pair.local].detach().cpu()

    @property
    def banded(self) -> bool:
        from convcli.autodiff.banded import Banded

        return isinstance(self.result.matrix, Banded)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def corner(self):
        """The top-left ``CORNER`` of the block as numpy, and the rows it shows."""
        matrix = self.result.matrix
        (r0, r1), (c0, c1) = self.result.rows, self.result.cols
        rows, cols = min(CORNER[0], r1 - r0), min(CORNER[1], c1 - c0)
        block = matrix.block((0, rows), (0, cols)) if self.banded else matrix[:rows, :cols]
        return block.cpu().numpy(), rows

    def summary(self) -> dict:
        """``jacobian --json``."""
        from convcli.autodiff.jacobian import jacobian_formula

        result, pair = self.result, self.pair
        matrix = result.matrix
        k = pair.weight.shape[-1]

        return {
            "command": "jacobian",
            "wrt": result.wrt,
            "shape": list(result.full_shape),
            "rows": list(result.rows),
            "cols": list(result.cols),
            "channel": {"output": pair.output, "input": pair.input},
            "format": "banded" if self.banded else "dense",
            "method": result.method,
            "autograd": result.details.get("autograd"),
            "engine": {"method": self.engine.method, "reason": self.engine.reason},
            "formula": jacobian_formula(pair.spec, k, result.wrt, self.taps),
            "check": None if result.check is None else {
                "ok": result.check.ok, "max_abs_diff": result.check.max_abs_diff,
                "tolerance": result.check.tolerance, "autograd": result.check.autograd},
            "spec": {**pair.spec.summary(k), "groups": self.groups},
            "bias": None if pair.bias is None else float(pair.bias[0]),
            "kernel": self.kernel.summary(self.coefficients),
            "input": self.source,
            "device": str(self.device),
            "dtype": self.dtype_name,
            "seconds": sum(v for key, v in result.details.items() if key.endswith("_seconds")),
            "seconds_closed_form": result.details.get("closed_seconds"),
            "seconds_autograd": result.details.get("autograd_seconds"),
            "output": self.output,
            "bytes": matrix.nbytes if self.banded else matrix.numel() * matrix.element_size(),
        }

    def show(self, *, quiet: bool, json_mode: bool, wrote: str | None) -> None:
        """The lines and a heatmap of the corner on stdout (the summary is the output), or,
        with ``-o`` or ``--json``, the lines as messages on stderr and the JSON."""
        from convcli.render.reporter import Reporter
        from convcli.render.tables import heatmap

        report = Reporter(quiet=quiet, json_mode=json_mode, data_on_stdout=self.output == "-")
        if self.output is None and not json_mode:
            from rich.console import Console

            console = Console(highlight=False, soft_wrap=True)
            for line in self.lines():
                console.print(line)
            block, rows = self.corner()
            r0, c0 = self.result.rows[0], self.result.cols[0]
            console.print(f"top-left corner (rows {r0}…{r0 + rows - 1}):")
            console.print(heatmap(block, r0, c0))
        else:
            for line in self.lines():
                report.info(line)
            if wrote is not None:
                where = "stdout" if self.output == "-" else self.output
                report.info(f"wrote [bold]{where}[/bold]: {wrote}")
        report.summary = self.summary()
        report.finish()

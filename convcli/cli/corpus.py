"""``convcli corpus``: a folder, list or manifest of files filtered in one run, here or on Dask."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from convcli.cli.options import (
    IO,
    KERNEL,
    AllowNonfiniteOpt,
    AttenuationOpt,
    BandpassOpt,
    BandstopOpt,
    BiasOpt,
    ClipOpt,
    CorrelateOpt,
    DeviceOpt,
    DilationOpt,
    DtypeOpt,
    Format,
    GainOpt,
    GroupsOpt,
    HighpassOpt,
    JsonOpt,
    LayoutOpt,
    LowpassOpt,
    MethodOpt,
    ModeOpt,
    NormalizeOpt,
    NormalizeOutputOpt,
    PaddingOpt,
    PadOpt,
    PeriodicOpt,
    QuietOpt,
    RateOpt,
    SizeOpt,
    StrideOpt,
    TransitionOpt,
    WindowOpt,
    bias_values,
    choice_option,
    conv_spec,
    fir_request,
    flag_option,
    given,
    kernel_request,
    number_option,
)

CORPUS = "Corpus"
DASK = "Dask (pip install 'convcli[dask]')"
Pick = Literal["random", "cycle", "all"]
#: failed files named one a line on stderr; the rest are in the report
SHOWN_FAILURES = 20

#: shown at the end of --help; tests/test_help.py runs each one in a copy of sample_data/
EXAMPLES = [
    ("convcli corpus chord.wav speech.wav --out-dir out --report results.jsonl",
     "filtered into out/ (a directory argument: all its audio/NPY files), one report line each"),
    ("convcli corpus 'sp*.wav' --out-dir out --lowpass 3000 --skip-existing",
     "a glob; rerun after an interruption: only the missing outputs are made"),
    ("convcli corpus speech.wav chord.wav --out-dir rev --kernel smooth5.txt --shard 0/2",
     "the first of two deterministic shares (a Slurm array sets it from SLURM_ARRAY_TASK_ID)"),
]


def command(
    ctx: typer.Context,
    inputs: Annotated[list[str] | None, typer.Argument(
        metavar="INPUT", help="Files, directories (all audio/NPY files in them) or quoted "
        "globs ('data/**/*.wav').", show_default=False)] = None,
    out_dir: Annotated[str | None, typer.Option("--out-dir", "-O", metavar="DIR",
                       rich_help_panel=IO, help="Where the outputs go, mirroring the input "
                       "tree (required).")] = None,
    recursive: Annotated[bool, flag_option("--recursive", "-r", rich_help_panel=CORPUS,
                         help="Search directories' subdirectories too.")] = False,
    files_from: Annotated[str | None, typer.Option("--files-from", metavar="LIST|-",
                          rich_help_panel=CORPUS, help="Input paths, one a line (- = stdin)."
                          )] = None,
    manifest: Annotated[str | None, typer.Option("--manifest", metavar="JSONL",
                        rich_help_panel=CORPUS, help="A JSONL manifest (NeMo's): one object a "
                        "line, the path under --path-key, relative to the manifest.")] = None,
    path_key: Annotated[str, typer.Option("--path-key", metavar="KEY", rich_help_panel=CORPUS,
                        help="The manifest key that holds the path.")] = "audio_filepath",
    report_path: Annotated[str | None, typer.Option("--report", metavar="JSONL",
                           rich_help_panel=CORPUS, help="One line per file: input, output, "
                           "status, error, kernel, frames, seconds, clipped, peak.")] = None,
    skip_existing: Annotated[bool, flag_option("--skip-existing", rich_help_panel=CORPUS,
                             help="Leave outputs already there (resume a stopped run).")] = False,
    shard: Annotated[str | None, typer.Option("--shard", metavar="I/N", rich_help_panel=CORPUS,
                     help="Take share I (0..N-1) of N, by a hash of each relative path. "
                     "Default: from SLURM_ARRAY_TASK_ID/_COUNT, else all.")] = None,
    pick: Annotated[Pick, choice_option("--pick", Pick, rich_help_panel=KERNEL,
                    help="With --kernel DIR|LIST: a random kernel per file (by --seed and its "
                    "path), the next in turn, or all (one output per kernel).")] = "random",
    seed: Annotated[int, number_option("--seed", metavar="S", rich_help_panel=KERNEL,
                    help="Seed of --pick random.")] = 0,
    kernel: Annotated[str | None, typer.Option("--kernel", "-k", metavar="PATH|DIR|LIST",
                      rich_help_panel=KERNEL, help="A kernel file, a directory of them, or a "
                      "text file naming one a line.")] = None,
    batch_files: Annotated[int, number_option("--batch-files", metavar="N",
                           rich_help_panel=CORPUS, help="Files read and filtered together "
                           "(equal lengths in one engine call).")] = 256,
    scheduler: Annotated[str | None, typer.Option("--scheduler", metavar="ADDRESS",
                         rich_help_panel=DASK, help="Run on this Dask scheduler "
                         "(tcp://HOST:8786).")] = None,
    workers: Annotated[int | None, number_option("--workers", metavar="N", rich_help_panel=DASK,
                       help="Run on a Dask LocalCluster of N worker processes here.")] = None,
    fmt: Annotated[Format | None, choice_option("--format", Format, "-f", rich_help_panel=IO,
                   help="Output format and extension (default: each input's).")] = None,
    subtype: Annotated[str | None, typer.Option("--subtype", rich_help_panel=IO,
                       help="Audio subtype: PCM_16, PCM_24, FLOAT, ... (default: the input's)."
                       )] = None,
    layout: LayoutOpt = None,
    rate: RateOpt = None,
    window: WindowOpt = None,
    size: SizeOpt = 31,
    periodic: PeriodicOpt = False,
    normalize: NormalizeOpt = None,
    groups: GroupsOpt = 1,
    lowpass: LowpassOpt = None,
    highpass: HighpassOpt = None,
    bandpass: BandpassOpt = None,
    bandstop: BandstopOpt = None,
    transition: TransitionOpt = None,
    attenuation: AttenuationOpt = None,
    gain: GainOpt = None,
    normalize_output: NormalizeOutputOpt = None,
    mode: ModeOpt = "same",
    pad: PadOpt = None,
    padding: PaddingOpt = "zeros",
    stride: StrideOpt = 1,
    dilation: DilationOpt = 1,
    correlate: CorrelateOpt = False,
    bias: BiasOpt = None,
    method: MethodOpt = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    allow_nonfinite: AllowNonfiniteOpt = False,
    clip: ClipOpt = "warn",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Filter a corpus: every file of directories, globs, lists or manifests, one bad file
    never stopping the rest, resumable, sharded, on Dask if asked."""
    from convcli import pipeline
    from convcli.corpus.run import CorpusJob, run_corpus
    from convcli.errors import InputError, UsageError
    from convcli.render.reporter import Reporter

    if out_dir is None:
        raise UsageError("--out-dir DIR is required", "the outputs go there, mirroring the inputs")
    design = fir_request(lowpass, highpass, bandpass, bandstop, transition, attenuation)
    spec = conv_spec(mode, padding, stride, dilation, correlate, groups, pad)
    request = kernel_request(window, size if design is None or given(ctx, "size") else None,
                             periodic, normalize, kernel, design)
    job = CorpusJob(
        args=list(inputs or []), out_dir=out_dir, recursive=recursive, files_from=files_from,
        manifest=manifest, path_key=path_key, report=report_path, skip_existing=skip_existing,
        shard=shard, pick=pick, seed=seed, scheduler=scheduler, workers=workers,
        batch_files=batch_files,
        filter=pipeline.FilterJob(
            inputs=[], outputs=[], spec=spec, kernel=request, out_format=fmt, subtype=subtype,
            layout=layout, rate=rate, method=method, device=device, dtype=dtype, gain=gain,
            normalize_output=normalize_output, clip=clip, allow_nonfinite=allow_nonfinite,
            bias=bias_values(bias)))
    report = Reporter(quiet=quiet, json_mode=json_)
    shown = [0]

    def on_failure(line: dict) -> None:
        shown[0] += 1
        if shown[0] <= SHOWN_FAILURES:
            error = line["error"]
            report.warn(error if line["input"] in error else f"{line['input']}: {error}")

    tally = run_corpus(job, progress=report.progress, on_failure=on_failure)
    if shown[0] > SHOWN_FAILURES:
        report.warn(f"... and {shown[0] - SHOWN_FAILURES} more failed"
                    f"{f' (see {report_path})' if report_path else ''}")
    if tally.clipped_files:
        report.warn(f"{tally.clipped_files} file{'s' * (tally.clipped_files > 1)} clipped "
                    "(their count and peak are in the report); a lower --gain, or --subtype "
                    "FLOAT, avoids it")
    report.info(f"{tally.files} files: {tally.done} done, {tally.failed} failed, "
                f"{tally.skipped} skipped, {tally.seconds:.2f} s ({tally.rate():.0f} files/s)")
    report.summary = {"command": "corpus", **tally.summary(), "report": report_path}
    report.finish()
    if tally.failed:
        raise InputError(f"{tally.failed} of {tally.files} files failed; the others were done",
                         f"see {report_path}" if report_path else
                         "--report FILE lists every file with its error")

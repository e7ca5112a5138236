"""`lstmbyhand odyssey`: "LSTM: A Search Space Odyssey" in small: eight cell variants, a few seeds each.

    lstmbyhand odyssey                                 # 8 variants x 3 seeds on monthly sunspots
    lstmbyhand odyssey --seeds 5 --variants V,NFG,NOAF --out odyssey-5
    lstmbyhand odyssey --json > results.json

Trains each variant of `lstmbyhand.studies.odyssey` (V, NIG, NFG, NOG, NIAF, NOAF, NP, CIFG) from
seeds 0 .. N-1, prints one row per variant (test RMSE mean ± sample std and median over the seeds,
the ratio of its mean to V's, above 1 worse than V; the largest |c_t| the gate trace shows on the test contexts, mean
over the seeds) and writes into --out:

    odyssey.png          test RMSE of every run by variant, and the mean training loss per epoch
    results.json         the settings, the seeds, every run and the summary
    .lstmbyhand-odyssey  the marker: the SHA-256 of each file this command wrote there

Files in --out are replaced only if this command wrote them and they are unchanged since (the
marker says so); anything else there is refused before training starts. Progress, one line a run,
goes to stderr; --json prints results.json's content instead of the table.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from lstmbyhand.errors import UserError

if TYPE_CHECKING:  # the parser must not import torch: `lstmbyhand --help` stays fast
    from matplotlib.figure import Figure

    from lstmbyhand.studies.odyssey import Run, Settings, Study

MARKER = ".lstmbyhand-odyssey"
WRITTEN_BY = "lstmbyhand odyssey"
RESULTS, PLOT = "results.json", "odyssey.png"
ALL_VARIANTS = "V,NIG,NFG,NOG,NIAF,NOAF,NP,CIFG"
SETTING_FLAGS = {  # flag -> (Settings field, type, help)
    "--epochs": ("epochs", int, "passes over the training windows (default 20)"),
    "--hidden": ("hidden", int, "LSTM hidden size H (default 32)"),
    "--context": ("context", int, "months in a sequence (default 144)"),
    "--horizon": ("horizon", int, "months forecast at every step (default 24)"),
    "--stride": ("stride", int, "months between training windows (default 12)"),
    "--batch": ("batch", int, "windows in a batch (default 32)"),
    "--lr": ("lr", float, "Adam's learning rate (default 0.01)"),
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "odyssey",
        help="V and seven variants of the LSTM (Greff et al. 2017) on monthly sunspots",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--variants", default=ALL_VARIANTS, help=f"comma list (default {ALL_VARIANTS})")
    p.add_argument(
        "--seeds", type=int, default=3, help="seeds 0 .. N-1 for each variant (default 3)"
    )
    for flag, (_, kind, text) in SETTING_FLAGS.items():
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--out", type=Path, default=Path("lstmbyhand-odyssey"), help="output folder")
    p.add_argument("--json", action="store_true", help="print the results as JSON, not the table")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1, or OMP_NUM_THREADS)")
    p.set_defaults(func=main)


def parse_variants(text: str, known: list[str]) -> list[str]:
    """'V,NFG' -> ['V', 'NFG']: each a known name, none twice."""
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in known:
            raise UserError(f"--variants: expected names from {','.join(known)}, got {name!r}")
    if len(set(names)) < len(names):
        raise UserError(f"--variants: expected each name once, got {text!r}")
    return names


def settings_from_args(args: argparse.Namespace) -> Settings:
    from lstmbyhand.studies.odyssey import Settings

    given = {name: getattr(args, flag[2:]) for flag, (name, _, _) in SETTING_FLAGS.items()}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    try:
        settings.check()
    except ValueError as err:
        raise UserError(f"--{err}") from None
    return settings


# -- the output folder ----------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_out(out: Path) -> None:
    """Refuse an --out that holds a file of ours this command did not write, or changed since."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder (it is created if missing)")
    ours = [name for name in (RESULTS, PLOT, MARKER) if (out / name).exists()]
    if not ours:
        return
    written = _marker(out)
    for name in (RESULTS, PLOT):
        if (out / name).exists():
            if name not in written or _digest((out / name).read_bytes()) != written[name]:
                raise UserError(
                    f"--out {out} holds {name}, which {WRITTEN_BY} did not write or which changed "
                    "since; move it or choose another --out"
                )


def _marker(out: Path) -> dict[str, str]:
    """The marker's file -> SHA-256, or a UserError when there is none or it is not ours."""
    where = out / MARKER
    try:
        content = json.loads(where.read_text())
        assert content["written_by"] == WRITTEN_BY
        files = content["files"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, AssertionError):
        raise UserError(
            f"--out {out} holds files of another program (no valid {MARKER}); choose another --out"
        ) from None
    return files


def write_out(out: Path, files: dict[str, bytes]) -> None:
    """The files, then the marker naming their digests (a crash between leaves them refused)."""
    from lstmbyhand.forecast.files import atomic_write

    check_out(out)  # again: minutes have passed since the first check
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write(out / name, data)
    marker = {"written_by": WRITTEN_BY, "files": {k: _digest(v) for k, v in files.items()}}
    atomic_write(out / MARKER, (json.dumps(marker, indent=1) + "\n").encode())


# -- the table and the plot -----------------------------------------------------------------------


def table(study: Study) -> str:
    from lstmbyhand.studies.odyssey import VARIANTS

    rows = [["variant", "what", "test RMSE mean ± std", "median", "ratio to V", "max |c|", "s/run"]]
    for s in study.summaries():
        ratio = "-" if s.ratio is None else f"{s.ratio:.3f}"
        rmse, middle = f"{s.mean:.2f} ± {s.std:.2f}", f"{s.median:.2f}"
        cell, seconds = f"{s.largest_cell:.3g}", f"{s.seconds:.1f}"
        rows.append([s.variant, VARIANTS[s.variant].what, rmse, middle, ratio, cell, seconds])
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    rows.insert(1, ["-" * w for w in widths])
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    seeds = ", ".join(str(s) for s in study.seeds)
    st = study.settings
    return "\n".join([
        *lines, "",
        f"seeds {seeds}; H {st.hidden}, context {st.context} months, horizon {st.horizon} months, "
        f"{st.epochs} epochs; test: the last {st.test_years} years",
        f"naive (the last 12 months' mean, held): test RMSE {study.baseline_rmse:.2f}",
    ])  # fmt: skip


def plot(study: Study) -> bytes:
    """Left: every run's test RMSE by variant, the mean as a bar; right: mean training loss."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    summaries = study.summaries()
    for k, s in enumerate(summaries):
        left.bar(k, s.mean, color="C0" if s.variant == "V" else "0.75", width=0.6)
        left.scatter([k] * len(s.rmse), s.rmse, color="black", s=12, zorder=3)
        runs = [r for r in study.runs if r.variant == s.variant]
        right.plot(range(1, study.settings.epochs + 1), _mean_loss(runs), label=s.variant)
    if summaries[0].variant == "V":
        left.axhline(summaries[0].mean, color="C0", linestyle="--", linewidth=1)
    low = min(min(s.rmse) for s in summaries)
    left.set(
        xticks=range(len(summaries)), xticklabels=[s.variant for s in summaries],
        ylabel="test RMSE (sunspot number)", ylim=(0.9 * low, None),
        title=f"Test RMSE, {len(study.seeds)} seeds (dots), mean (bars)",
    )  # fmt: skip
    right.set(xlabel="epoch", ylabel="training MSE (scaled)", yscale="log", title="Training loss")
    right.legend(fontsize=8, ncol=2)
    _title(fig, study)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _title(fig: Figure, study: Study) -> None:
    fig.suptitle(
        f"LSTM variants on monthly sunspots: {study.settings.horizon}-month forecasts "
        f"(naive: {study.baseline_rmse:.1f})",
        fontsize=10,
    )


def _mean_loss(runs: list[Run]) -> list[float]:
    return [sum(epoch) / len(epoch) for epoch in zip(*(r.train_loss for r in runs), strict=True)]


def main(args: argparse.Namespace) -> int:
    import sys

    import matplotlib

    from lstmbyhand.cli.threads import use_threads

    matplotlib.use("Agg")  # the CLI draws to files only
    use_threads(args.threads)
    from lstmbyhand.studies.odyssey import VARIANTS, load_sunspots, make_task, run_study

    variants = parse_variants(args.variants, list(VARIANTS))
    if args.seeds < 1:
        raise UserError(f"--seeds must be a whole number ≥ 1, got {args.seeds}")
    settings = settings_from_args(args)
    try:
        task = make_task(load_sunspots(), settings)
    except ValueError as err:  # context and horizon too long for the series
        raise UserError(str(err)) from None
    check_out(args.out)

    def progress(run: Run) -> None:
        print(
            f"odyssey: seed {run.seed} {run.variant}: test RMSE {run.test_rmse:.2f} "
            f"({run.seconds:.1f} s)",
            file=sys.stderr,
        )

    study = run_study(variants, range(args.seeds), settings, progress, task)
    results = json.dumps(_with_machine(study.to_dict()), indent=1) + "\n"
    write_out(args.out, {RESULTS: results.encode(), PLOT: plot(study)})
    if args.json:
        print(results, end="")
    else:
        print(table(study))
        print(f"written: {args.out / PLOT}, {args.out / RESULTS}")
    return 0


def _with_machine(results: dict[str, object]) -> dict[str, object]:
    import torch

    from lstmbyhand.cli.timing import machine

    return {**results, "machine": machine(torch.device("cpu"))}

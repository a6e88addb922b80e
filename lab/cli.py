"""The `lab` command: a thin layer over the lab library.

Every command imports what it needs inside its function, so ``lab --help`` stays fast and a
command works as soon as its own module exists.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.errors import LabError

console = Console()
err_console = Console(stderr=True)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def print_lab_error(exc: LabError) -> None:
    err_console.print(f"[bold red]error:[/] [red]{escape(exc.message)}[/]")
    if exc.hint:
        err_console.print(f"[yellow]hint: {escape(exc.hint)}[/]")


class LabGroup(click.Group):
    """A click group that turns LabError into a short red message and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LabError as exc:
            print_lab_error(exc)
            ctx.exit(1)


def _mode_option(f):
    return click.option(
        "--online/--offline", "online", default=None,
        help="Pull images from registries, or build everything locally from Go modules and "
             "Debian packages. Default: online when a registry answers, else offline.",
    )(f)


def _mode(online: bool | None) -> str:
    return "auto" if online is None else ("online" if online else "offline")


@click.group("lab", cls=LabGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="k8s-lab", prog_name="lab")
def cli() -> None:
    """k8s-lab: learn Kubernetes on a real kind cluster, one notebook at a time."""


# ----------------------------------------------------------------------------------- doctor


@cli.command()
@_mode_option
def doctor(online: bool | None) -> None:
    """Check that this host can run the lab (Docker, tools, disk, memory, Python)."""
    from lab import doctor as doc

    checks = doc.run_checks(mode=_mode(online))
    table = Table(title="lab doctor")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    colours = {"ok": "green", "warn": "yellow", "FAIL": "red"}
    for c in checks:
        table.add_row(c.name, f"[{colours[c.status]}]{c.status}[/]", escape(c.detail))
    console.print(table)
    to_fix = [c for c in checks if not c.ok and c.fix]
    if to_fix:
        console.print("[bold]What to fix:[/]")
        for c in to_fix:
            colour = "red" if c.required else "yellow"
            console.print(f"  [{colour}]{c.name}[/]: {escape(c.fix)}")
    failed = doc.failed_required(checks)
    if failed:
        raise LabError(
            f"{len(failed)} required check{'s' if len(failed) > 1 else ''} failed: "
            + ", ".join(c.name for c in failed),
            "fix the rows marked FAIL above, then run `lab doctor` again",
        )
    console.print("[green]This host can run the lab.[/]")


# ---------------------------------------------------------------------------------- cluster


@cli.group(context_settings=CONTEXT_SETTINGS)
def cluster() -> None:
    """Create, delete and inspect the kind cluster."""


@cluster.command("up")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Number of worker nodes besides the control plane. Default: a running cluster "
                   "keeps its size, a new one has none.")
@_mode_option
@click.option("--recreate", is_flag=True, help="Delete an existing cluster first.")
def cluster_up(workers: int | None, online: bool | None, recreate: bool) -> None:
    """Create the cluster, or do nothing when it already runs."""
    from lab import cluster as lab_cluster

    info = lab_cluster.up(workers=workers, mode=_mode(online), recreate=recreate)
    verb = "created" if info.created else "reused"
    console.print(f"[green]cluster {escape(info.name)} {verb}[/]: {len(info.nodes)} node(s) Ready, "
                  f"context {escape(info.context)}, image {escape(info.image)}")


@cluster.command("down")
def cluster_down() -> None:
    """Delete the cluster (build caches are kept)."""
    from lab import cluster as lab_cluster

    lab_cluster.down()
    console.print("[green]cluster deleted[/]")


@cluster.command("status")
def cluster_status() -> None:
    """Show the cluster's state."""
    from lab import cluster as lab_cluster

    state = lab_cluster.status()
    table = Table(title="cluster status", show_header=True)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in (state or {}).items():
        table.add_row(escape(str(key)), escape(_format_value(value)))
    console.print(table)


def _format_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


# ----------------------------------------------------------------------------------- images


@cli.command("tools", context_settings=CONTEXT_SETTINGS)
@_mode_option
def tools_cmd(online: bool | None) -> None:
    """Find, download or build kind, kubectl and helm at the lab's versions, and show where they are.

    The lab never uses whatever kubectl is on PATH (it may be another version); put the printed
    directories first on PATH to type the same commands the notebooks show.
    """
    from lab import tools

    found = tools.ensure_all(_mode(online))
    table = Table(title="the lab's tools", show_header=True)
    for column in ("tool", "version", "path"):
        table.add_column(column, overflow="fold")
    for name, path in found.items():
        table.add_row(name, escape(tools.version(name) or "?"), escape(str(path)))
    console.print(table)
    dirs = dict.fromkeys(str(path.parent) for path in found.values())
    console.print(f"export PATH={escape(':'.join(dirs))}:$PATH", soft_wrap=True, highlight=False)


@cli.group(context_settings=CONTEXT_SETTINGS)
def images() -> None:
    """Build the images the lab uses."""


@images.command("build")
@_mode_option
@click.option("--load/--no-load", default=True, show_default=True,
              help="Load the built images into the kind cluster.")
def images_build(online: bool | None, load: bool) -> None:
    """Build (or pull) the lab's images."""
    from lab import images as lab_images

    built = lab_images.build(mode=_mode(online), load=load)
    for ref in built:
        console.print(f"  {escape(str(ref))}")
    console.print(f"[green]{len(built)} image{'s' if len(built) != 1 else ''} ready[/]"
                  + ("" if load else " (not loaded into the cluster)"))


# ----------------------------------------------------------------------------------- deploy


@cli.command("deploy", context_settings=CONTEXT_SETTINGS)
@click.option("--helm", "method", flag_value="helm",
              help="Install with the Helm chart in chart/ (the default).")
@click.option("--manifests", "method", flag_value="manifests",
              help="Apply the layers in manifests/ with kubectl, in order.")
@_mode_option
@click.option("--delete", is_flag=True,
              help="Remove the system instead (files on the host are kept). Without --helm or "
                   "--manifests, whichever deployed it.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until every workload is ready.")
@click.option("--timeout", type=click.IntRange(min=10), default=600, show_default=True,
              help="Seconds to wait for readiness.")
def deploy_cmd(method: str | None, online: bool | None, delete: bool, wait: bool, timeout: int) -> None:
    """Install the whole lab system into the namespace k8s-assignment (or remove it)."""
    from lab import deploy as lab_deploy

    if delete:
        found = lab_deploy.undeploy(method, wait=wait, timeout=timeout)
        console.print(f"[green]lab system removed[/]{' (' + found + ')' if found else ''}")
        return
    result = lab_deploy.deploy(method or "helm", mode=_mode(online), wait=wait, timeout=timeout)
    console.print(f"[green]lab system deployed[/] with {result.method} ({result.mode} images) "
                  f"in {result.seconds:.0f} s: http://127.0.0.1:30080/")


# -------------------------------------------------------------------------------------- run


@cli.command("run", context_settings=CONTEXT_SETTINGS)
@click.argument("notebooks", nargs=-1)
@click.option("-p", "--parameter", "parameters", multiple=True, metavar="KEY=VALUE",
              help="Set a parameter of the notebooks' `parameters` cell; the value is read as YAML "
                   "(3 is a number, true a boolean). Repeatable.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the executed notebooks and report here instead of runs/<UTC timestamp>/.")
@click.option("--from", "start", metavar="NOTEBOOK", help="Start at this notebook.")
@click.option("--only", is_flag=True, help="Run just the named notebooks, not the ones before them.")
@click.option("--notebooks-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Where the notebooks are (default: the repository's notebooks/).")
@click.option("--cell-timeout", type=click.IntRange(min=1), default=None,
              help="Seconds one cell may run before the notebook fails (default 1200).")
def run_cmd(notebooks, parameters, out_dir, start, only, notebooks_dir, cell_timeout) -> None:
    """Execute the lab notebooks headlessly, in order.

    NOTEBOOKS are named by file name, stem or number (01-cluster.ipynb, 01-cluster or 01).
    With no names every notebook runs; with names, every notebook up to the last one named
    runs (earlier notebooks prepare the state later ones use), or only those with --only.
    The run stops at the first failing notebook and exits non-zero.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lab import run as runner

    kwargs = {} if cell_timeout is None else {"cell_timeout": cell_timeout}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = {"id": None}

        def listener(event: str, result) -> None:
            if event == "start":
                task["id"] = progress.add_task(f"running {result.notebook}", total=None)
                return
            progress.remove_task(task["id"])
            if result.status == "passed":
                progress.console.print(f"[green]passed[/] {result.notebook} ({result.duration_s:.1f} s)")
            else:
                err = result.error
                where = f" in cell {err.cell_index}" if err.cell_index is not None else ""
                progress.console.print(
                    f"[red]failed[/] {result.notebook}{where} ({result.duration_s:.1f} s): "
                    f"[red]{escape(err.ename)}[/]: {escape(err.evalue)}"
                )

        report = runner.run(notebooks, parameters, out_dir=out_dir, start=start, only=only,
                            notebooks_dir=notebooks_dir, listener=listener, **kwargs)

    skipped = [r.notebook for r in report.results if r.status == "not run"]
    if skipped:
        console.print(f"[yellow]not run:[/] {', '.join(skipped)}")
    console.print(f"executed notebooks and report: {escape(report.out_dir)}")
    console.print(f"report: {escape(str(Path(report.out_dir) / runner.REPORT_MD))}")
    if not report.ok:
        failed = next(r for r in report.results if r.status == "failed")
        raise LabError(
            f"{failed.notebook} failed",
            f"open {failed.output} to see the failing cell; re-run from it with `lab run --from {failed.notebook}`",
        )


# ----------------------------------------------------------------------------------- backup


@cli.group(context_settings=CONTEXT_SETTINGS)
def backup() -> None:
    """Back up, restore and verify the lab database; list backups; run a disaster drill."""


def _backup_options(f):
    f = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
                     help="Backup directory (default: <lab data dir>/backups, which the nodes "
                          "see as /var/local/k8s-lab/backups).")(f)
    f = click.option("-n", "--namespace", default=None, metavar="NS",
                     help="Namespace of the database (default: k8s-assignment).")(f)
    return f


def _namespace(namespace: str | None) -> str:
    from lab import config

    return namespace or config.NAMESPACE


def _print_frame(frame, title: str) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, bool):
                cells.append("[green]yes[/]" if value else "[red]no[/]")
            else:
                cells.append(escape("" if value is None or str(value) in ("<NA>", "nan", "None") else str(value)))
        table.add_row(*cells)
    console.print(table)


def _print_verify(frame) -> None:
    _print_frame(frame, "verify")
    if not frame.attrs.get("ok"):
        missing = frame.attrs.get("missing")
        raise LabError("verify found differences" + (f"; missing databases: {', '.join(missing)}" if missing else ""),
                       "the rows marked `no` differ between the backup and the database")
    console.print(f"[green]all {len(frame)} checks ok[/]")


@backup.command("create")
@click.argument("database", required=False)
@_backup_options
@click.option("--level", type=click.IntRange(1, 9), default=6, show_default=True, help="gzip level.")
def backup_create(database: str | None, namespace: str | None, directory: Path | None, level: int) -> None:
    """Dump DATABASE (default: every user database) into a timestamped .sql.gz with metadata."""
    from lab import backup as lab_backup

    made = lab_backup.create(database, namespace=_namespace(namespace), directory=directory, level=level)
    meta = made.metadata
    console.print(f"[green]backup written[/]: {escape(str(made.path))} ({meta['sizes']['compressed_bytes']} "
                  f"bytes, {len(meta['tables'])} tables, {meta['durations']['total_s']:.1f} s)")


@backup.command("restore")
@click.argument("file")
@_backup_options
@click.option("--into", metavar="NAME", help="Restore into this database (created fresh) instead of "
                                             "the backup's own.")
@click.option("--replace", is_flag=True, help="Allow --into an existing database that has tables.")
@click.option("--verify/--no-verify", "check", default=True, show_default=True,
              help="Verify the restored data against the backup's metadata.")
@click.option("--without-metadata", is_flag=True,
              help="Restore a file that has no metadata (e.g. from the CronJob); only gzip and size "
                   "are checked.")
def backup_restore(file: str, namespace: str | None, directory: Path | None, into: str | None,
                   replace: bool, check: bool, without_metadata: bool) -> None:
    """Restore FILE (a path, a name in the backup directory, or `latest`).

    The file is checked (size, sha256, gzip -t, complete dump) before the database is touched;
    the target database is then replaced by the backup's content.
    """
    from lab import backup as lab_backup

    ns = _namespace(namespace)
    result = lab_backup.restore(file, into=into, namespace=ns, directory=directory, replace=replace,
                                require_metadata=not without_metadata)
    console.print(f"[green]restored[/] {escape(result.path.name)} into "
                  f"{escape(', '.join(result.databases) or 'its databases')} in {result.seconds:.1f} s")
    if check and result.metadata is not None:
        _print_verify(lab_backup.verify(result.path, into=into, namespace=ns, directory=directory))


@backup.command("verify")
@click.argument("file", required=False)
@_backup_options
@click.option("--into", metavar="NAME", help="The restored database (default: the backup's own).")
@click.option("--source", metavar="NAME", help="Compare with this live database instead of the metadata.")
def backup_verify(file: str | None, namespace: str | None, directory: Path | None, into: str | None,
                  source: str | None) -> None:
    """Compare row counts and CHECKSUM TABLE per table with FILE's metadata (or --source)."""
    from lab import backup as lab_backup

    _print_verify(lab_backup.verify(file, into=into, source=source, namespace=_namespace(namespace),
                                    directory=directory))


@backup.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Backup directory (default: <lab data dir>/backups).")
def backup_list(directory: Path | None) -> None:
    """List the backups in the backup directory."""
    from lab import backup as lab_backup

    frame = lab_backup.list_backups(directory)
    if frame.empty:
        console.print(f"no backups in {escape(str(directory or lab_backup.backup_dir()))}")
        return
    shown = frame.assign(time=frame["time"].dt.strftime("%Y-%m-%d %H:%M:%SZ"),
                         size=frame["size"].map(lab_backup.human_size))
    _print_frame(shown, f"backups in {directory or lab_backup.backup_dir()}")


@backup.command("drill")
@click.option("--database", metavar="NAME", help="Back up this database only (default: every one).")
@_backup_options
@click.option("--stage", "stages", multiple=True, type=click.Choice(["pod", "statefulset", "namespace", "database"]),
              help="Only these stages, in this order (repeatable; default: pod, statefulset, namespace; `database` drops the database so that only the backup can help).")
@click.option("--yes", is_flag=True, help="Really delete the Pod, the StatefulSet and the namespace.")
def backup_drill(database: str | None, namespace: str | None, directory: Path | None, stages, yes: bool) -> None:
    """Disaster drill: delete the database Pod, its StatefulSet, then the namespace; recover each time."""
    from lab import backup as lab_backup

    ns = _namespace(namespace)
    if not yes:
        raise LabError(f"the drill deletes the database Pod, StatefulSet and namespace {ns}",
                       "pass --yes to run it")
    frame = lab_backup.drill(ns, database=database, directory=directory,
                             stages=stages or lab_backup.DRILL_STAGES)
    _print_frame(frame, "disaster drill")


# ------------------------------------------------------------------------------------ grade


@cli.command("grade", context_settings=CONTEXT_SETTINGS)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write gradebook.csv, details.csv, flags.csv and report.html here "
                   "(default: runs/grade-<UTC timestamp>/).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Submissions graded (or, with --execute, executed) in parallel.")
@click.option("--reference", "reference_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The notebooks as handed out, whose checkpoints every submission must have "
                   "(default: the repository's notebooks/).")
@click.option("--execute", is_flag=True,
              help="First run each submission's notebooks headlessly (papermill), each in its own "
                   "namespace, then grade the executed copies.")
@click.option("--timeout", "notebook_timeout", type=click.IntRange(min=1), default=1800, show_default=True,
              help="With --execute: seconds one notebook may run before it is stopped.")
@click.option("--cell-timeout", type=click.IntRange(min=1), default=None,
              help="With --execute: seconds one cell may run (default 1200).")
@click.option("--namespace-prefix", default="grade-", show_default=True,
              help="With --execute: a submission's namespace is this prefix plus the student's name.")
@click.option("--live", is_flag=True,
              help="Instead of reading notebooks, run every registered check (instructor-only ones "
                   "too) against a live cluster and print the table.")
@click.option("--context", default=None, help="With --live: the kubeconfig context (default kind-k8s-lab).")
@click.option("--namespace", default=None, help="With --live: the namespace (default k8s-assignment).")
def grade_cmd(paths, out_dir, jobs, reference_dir, execute, notebook_timeout, cell_timeout, namespace_prefix,
              live, context, namespace) -> None:
    """Grade executed notebooks from their checkpoint evidence.

    Each PATH is one student's directory of executed notebooks, or a directory of such
    directories (a folder of students, or runs/ with one run directory each); a student
    directory holding several run directories is graded by its latest run. Prints a summary,
    writes the gradebook, and flags edited outputs, copied runs, deleted checkpoints and
    evidence from more than one cluster.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lab import grade as grader

    if live:
        if paths or execute:
            raise LabError("--live checks a cluster, not submissions", "drop the PATHs and --execute, or drop --live")
        _grade_live(grader, context, namespace, out_dir)
        return
    if not paths:
        raise LabError("name at least one submission directory",
                       "e.g. `lab grade submissions/` or `lab grade runs/`; `lab grade --live` checks a cluster")
    out = out_dir or grader.default_out_dir()

    def bar(description: str) -> Progress:
        # auto_refresh off: no display thread, so worker processes fork from a single-threaded parent
        return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=console, transient=True, auto_refresh=False)

    if execute:
        executed_dir = out / "executed"
        with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                      transient=True) as progress:
            task = progress.add_task("executing submissions", total=None)

            def listener(student: str, notebook: str, event: str) -> None:
                if event == "start":
                    progress.update(task, description=f"executing {student}: {notebook}")
                else:
                    colour = "green" if event == "passed" else "red"
                    progress.console.print(f"[{colour}]{event}[/] {escape(student)} {escape(notebook)}")

            grader.execute_all(paths, executed_dir, namespace_prefix=namespace_prefix, jobs=jobs,
                               timeout=notebook_timeout, cell_timeout=cell_timeout, listener=listener)
        paths = (executed_dir,)

    with bar("grading") as progress:
        task = progress.add_task("grading", total=None, last="")

        def advance(done: int, total: int, student: str) -> None:
            progress.update(task, completed=done, total=total, last=student)
            progress.refresh()

        book = grader.grade(paths, reference_dir=reference_dir, jobs=jobs, progress=advance)
    written = book.write(out)
    _print_gradebook(book)
    console.print(f"graded {len(book.submissions)} submission(s) in {book.seconds:.1f} s")
    for warning in book.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if book.reference is None:
        console.print("[yellow]no reference notebooks: the expected checks were derived from the submissions, "
                      "so deleted checkpoints cannot be detected (use --reference DIR)[/]")
    for what, path in written.items():
        console.print(f"{what}: {escape(str(path))}")


def _print_gradebook(book, limit: int = 60) -> None:
    table = Table(title="gradebook")
    for column in ("student", "points", "%", "status", "flags"):
        table.add_column(column, justify="right" if column in ("points", "%") else "left", overflow="fold")
    rows = book.table()
    colours = {"graded": "green", "flagged": "red", "error": "yellow"}
    for student, row in rows.head(limit).iterrows():
        table.add_row(escape(str(student)), f"{row.earned:g}/{row.possible:g}", f"{row.percent:g}",
                      f"[{colours.get(row.status, 'white')}]{row.status}[/]",
                      escape(row["flags"] or row["errors"]))
    console.print(table)
    if len(rows) > limit:
        console.print(f"... and {len(rows) - limit} more: see the report")


def _grade_live(grader, context, namespace, out_dir) -> None:
    frame = grader.live(context=context, namespace=namespace)
    table = Table(title=f"live checks ({escape(context or 'kind-k8s-lab')}, "
                        f"namespace {escape(namespace or 'k8s-assignment')})")
    for column in ("check", "who", "points", "result", "message / hint"):
        table.add_column(column, overflow="fold")
    for _, r in frame.iterrows():
        text = escape(r.message) + ("" if r.passed else f"\n[yellow]hint: {escape(r.hint)}[/]")
        table.add_row(escape(r.check_id), "instructor" if r.instructor_only else "student",
                      f"{r.earned:g}/{r.points:g}", "[green]PASS[/]" if r.passed else "[red]FAIL[/]", text)
    console.print(table)
    console.print(f"{frame.earned.sum():g}/{frame.points.sum():g} points, "
                  f"{int(frame.passed.sum())}/{len(frame)} checks passed")
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = Path(out_dir) / "live.csv"
        frame.to_csv(path, index=False)
        console.print(f"live checks: {escape(str(path))}")


# ------------------------------------------------------------------------------------ probe


@cli.command("probe", context_settings=CONTEXT_SETTINGS)
@click.option("-n", "--namespace", default=None, metavar="NS",
              help="Namespace of the deployed system (default: k8s-assignment).")
@click.option("--canary", is_flag=True,
              help="First prove that the cluster enforces NetworkPolicy at all (in a namespace "
                   "of its own, removed afterwards).")
def probe_cmd(namespace: str | None, canary: bool) -> None:
    """Measure who can connect to whom in the deployed system, against the lab's policy.

    Sources: the web Pods and a long-lived non-web probe Pod (created once, then reused).
    Destinations: the database Service on 3306 and the web Service on 80. Expected: only web
    reaches the database; everyone reaches web. Exits non-zero when a cell differs, and prints
    the kubectl command that reproduces each such cell.
    """
    from lab import config as lab_config
    from lab import probe as lab_probe

    if canary:
        result = lab_probe.canary()
        console.print(f"[green]canary:[/] {escape(result.message)}")
    df = lab_probe.lab_matrix(namespace or lab_config.NAMESPACE)
    table = Table(title=f"lab probe: {namespace or lab_config.NAMESPACE} "
                        f"({df.attrs.get('seconds', 0):.1f} s)")
    for column in ("source", "group", "destination", "port", "expected", "observed", "ok",
                   "attempts"):
        table.add_column(column, justify="right" if column in ("port", "attempts") else "left")
    colours = {"connected": "green", "refused": "yellow", "timeout": "red"}
    for row in df.itertuples():
        colour = colours.get(row.observed, "magenta")
        table.add_row(escape(row.source), escape(row.source_group), escape(row.destination),
                      str(row.port), row.expected, f"[{colour}]{row.observed}[/]",
                      "[green]✓[/]" if row.correct else "[bold red]✗[/]", str(row.attempts))
    console.print(table)
    bad = df[~df["correct"]]
    if bad.empty:
        console.print(f"[green]all {len(df)} cells match the lab's policy[/]")
        return
    for row in bad.itertuples():
        console.print(f"[red]{escape(row.source)} -> {escape(row.destination)}:{row.port}[/]: "
                      f"expected {row.expected}, observed {row.observed}"
                      + (f" ({escape(row.detail)})" if row.detail else "")
                      + "; reproduce with:")
        console.print(escape(row.reproduce), soft_wrap=True, markup=False)
    raise LabError(f"{len(bad)} of {len(df)} cells differ from the lab's policy",
                   "run the commands above to see each one again; check the NetworkPolicies "
                   "with `kubectl -n " + (namespace or lab_config.NAMESPACE)
                   + " get networkpolicy -o yaml`" + lab_probe.cni_note())


# ----------------------------------------------------------------------------------- events


@cli.command("events", context_settings=CONTEXT_SETTINGS)
@click.option("-n", "--namespace", default=None, metavar="NS",
              help="Namespace the watcher DaemonSet runs in, which its Role lets it watch "
                   "(default: k8s-assignment).")
@click.option("--since", metavar="DURATION|TIME",
              help="Only events newer than this: 30s, 10m, 2h, 1d, or a time such as 2024-05-01T12:00:00Z.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every event (one row per watcher line, deduplicated) to this CSV file.")
def events_cmd(namespace: str | None, since: str | None, csv_path: Path | None) -> None:
    """Summarize the pod watcher's events: one row per Pod with its lifecycle.

    Reads every watcher Pod's log through the API. Times are UTC; the `+s` columns count seconds
    from the Pod's creation (Kubernetes keeps those times to the second).
    """
    from lab import config, watch

    namespace = namespace or config.NAMESPACE
    events = watch.load_events(namespace, since=since)
    pods = watch.lifecycles(events)
    if csv_path is not None:
        watch.to_csv(events, csv_path)
    rows = watch.pod_events(events)
    table = Table(title=f"Pods seen by the watcher in {namespace}"
                        + (f" since {since}" if since else ""))
    for column, justify in (("pod", "left"), ("namespace", "left"), ("node", "left"), ("phase", "left"),
                            ("created", "left"), ("scheduled", "right"), ("ready", "right"),
                            ("deleted", "right"), ("events", "right")):
        table.add_column(column, justify=justify, overflow="fold")
    for pod in pods.itertuples(index=False):
        table.add_row(escape(str(pod.pod)), escape(_text(pod.namespace)), escape(_text(pod.node)),
                      escape(_text(pod.phase)), _clock(pod.created), _offset(pod.to_scheduled_s),
                      _offset(pod.to_ready_s), _offset(pod.lifetime_s), str(pod.events))
    console.print(table)
    kinds = rows["type"].value_counts()
    counts = ", ".join(f"{kind} {int(kinds.get(kind, 0))}" for kind in watch.POD_TYPES if kinds.get(kind, 0))
    watchers = rows["session"].nunique()
    span = f"{_clock(rows['time'].min())}..{_clock(rows['time'].max())} UTC" if len(rows) else "no events"
    console.print(f"{len(pods)} Pod{'s' if len(pods) != 1 else ''}, {len(rows)} events "
                  f"({counts or 'none'}) from {watchers} watcher run{'s' if watchers != 1 else ''}, {span}")
    if csv_path is not None:
        console.print(f"events written to {escape(str(csv_path))}")


# ---------------------------------------------------------------------------------- release


@cli.command("release", context_settings=CONTEXT_SETTINGS)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def release_cmd(directory: Path) -> None:
    """Write the student bundle into DIRECTORY: the handouts and what they need, no solutions.

    Leaves out the notebook sources, the reference notebooks, tests and the manifests students
    write themselves; blanks every marked solution; refuses to finish if anything still reveals one.
    """
    from lab import release

    written = release.release(directory)
    console.print(f"[green]{len(written)} files[/] written to {escape(str(directory))}; "
                  "students open notebooks/ there")


def _text(value) -> str:
    return "" if value is None or (not isinstance(value, str) and value != value) else str(value)


def _clock(value) -> str:
    return "" if value is None or value != value else value.strftime("%H:%M:%S")


def _offset(seconds) -> str:
    return "" if seconds is None or seconds != seconds else f"+{seconds:.0f}s"


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="lab")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

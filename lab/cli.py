"""The `lab` command: a thin layer over the lab library.

Every command imports what it needs inside its function, so ``lab --help`` stays fast and a
command works as soon as its own module exists.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Sequence

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab import timing
from lab.errors import LabError

console = Console()
err_console = Console(stderr=True)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def print_lab_error(exc: LabError) -> None:
    # soft_wrap: a message is never cut into lines at the terminal's width (grep finds it whole)
    err_console.print(f"[bold red]error:[/] [red]{escape(exc.message)}[/]", soft_wrap=True)
    if exc.hint:
        err_console.print(f"[yellow]hint: {escape(exc.hint)}[/]", soft_wrap=True)


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


def target_options(namespaced: bool = True):
    """--cluster/--context/--kubeconfig (and -n/--namespace) on a command that touches a cluster;
    the command receives the one :class:`~lab.target.Target` they name."""

    def wrap(f):
        @functools.wraps(f)
        def command(*args, cluster, context, kubeconfig, namespace=None, **kwargs):
            from lab.target import Target

            return f(*args, target=Target.of(cluster, namespace, context, kubeconfig), **kwargs)

        options = [
            click.option("--cluster", metavar="NAME", default=None,
                         help="The kind cluster (context kind-NAME). Default: $LAB_CLUSTER or k8s-lab."),
            click.option("--context", metavar="CONTEXT", default=None,
                         help="A kubeconfig context instead of kind's own (a classroom's, a real cluster's)."),
            click.option("--kubeconfig", metavar="FILE", default=None, type=click.Path(dir_okay=False),
                         help="The kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."),
        ]
        if namespaced:
            options.append(click.option("-n", "--namespace", metavar="NS", default=None,
                                        help="The lab's namespace (default: k8s-assignment)."))
        for option in reversed(options):
            command = option(command)
        return command

    return wrap


def output_option(f):
    return click.option("-o", "--output", type=click.Choice(["table", "wide", "json", "csv"]), default="table",
                        show_default=True, help="table (names never broken), wide (every column), json or csv.")(f)


def emit(frame, output: str, title: str, narrow: Sequence[str] | None = None) -> None:
    """A listing in the form -o asked for. Tables never wrap or cut a cell, so `| grep NAME` finds
    whole names at any width; `narrow` are the columns the default table shows (wide shows all)."""
    if output == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", indent=2))
        return
    if output == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
        return
    columns = list(narrow) if narrow is not None and output == "table" else [str(c) for c in frame.columns]
    table = Table(title=title, box=box.SIMPLE_HEAD if console.is_terminal else None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ignore")
    for row in frame[columns].itertuples(index=False):
        table.add_row(*(_cell(value) for value in row))
    print_whole(table)


def print_whole(table: Table) -> None:
    # Piped output has no width: print each row whole rather than fold it at 80 columns.
    wide = console if console.is_terminal else Console(width=100_000, highlight=False)
    wide.print(table, crop=False)


def _cell(value) -> str:
    if isinstance(value, bool):
        return "[green]yes[/]" if value else "[red]no[/]"
    return escape("" if value is None or str(value) in ("<NA>", "nan", "NaT", "None") else str(value))


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
    from lab.host import doctor as doc

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
@target_options(namespaced=False)
def cluster_up(workers: int | None, online: bool | None, recreate: bool, target) -> None:
    """Create the cluster, or do nothing when it already runs."""
    from lab.cluster import kind as lab_cluster

    info = lab_cluster.up(target, workers=workers, mode=_mode(online), recreate=recreate)
    verb = "created" if info.created else "reused"
    console.print(f"[green]cluster {escape(info.name)} {verb}[/]: {len(info.nodes)} node(s) Ready, "
                  f"context {escape(info.context)}, image {escape(info.image)}")


@cluster.command("down")
@target_options(namespaced=False)
def cluster_down(target) -> None:
    """Delete the cluster (build caches are kept)."""
    from lab.cluster import kind as lab_cluster

    lab_cluster.down(target)
    console.print("[green]cluster deleted[/]")


@cluster.command("status")
@target_options(namespaced=False)
def cluster_status(target) -> None:
    """Show the cluster's state."""
    from lab.cluster import kind as lab_cluster

    state = lab_cluster.status(target)
    table = Table(title="cluster status", show_header=True)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in (state or {}).items():
        table.add_row(escape(str(key)), escape(_format_value(value)))
    console.print(table)


@cluster.command("verify")
@click.option("--focus", metavar="REGEX", default=None,
              help="Run the upstream tests whose full names match REGEX (a Python regular expression) "
                   "instead of the lab's curated selection.")
@click.option("--skip", metavar="REGEX", default=None,
              help="Leave out the tests whose names match REGEX. Default: [Disruptive], [Flaky] and "
                   "[Provider:...] (one cloud's) tests.")
@click.option("--quick", is_flag=True, help="One test per area, a few minutes (what `make test` runs).")
@click.option("--list", "list_only", is_flag=True, help="Print the names of the selected tests and stop.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the JUnit report, the log and results.json here instead of runs/verify-<UTC timestamp>/.")
@target_options(namespaced=False)
def cluster_verify(focus: str | None, skip: str | None, quick: bool, list_only: bool, out_dir: Path | None,
                   target) -> None:
    """Run Kubernetes' own end-to-end tests (upstream e2e.test) against the cluster.

    Builds e2e.test and agnhost from the k8s.io/kubernetes module at the cluster's version, and the
    test images from the lab's Debian base (all cached), loads the images into the nodes and runs
    the lab's curated selection: NetworkPolicy, Services, DNS, StatefulSet, DaemonSet, ConfigMap and
    Secret volumes, the downward API, hostPath and node-directory volumes. Needs the cluster's admin
    credentials. Exits non-zero when a test fails.
    """
    from lab.cluster import verify

    selection = verify.Selection.of(focus, skip, quick)
    if list_only:
        for name in selection.pick(verify.list_tests(verify.e2e.e2e_binary())):
            click.echo(name)
        return
    report = verify.run(target, selection, out_dir)
    print_whole(verify_table(report.results, f"lab cluster verify: {report.target} ({report.nodes} nodes)"))
    for result in report.results:
        if result.failed:
            err_console.print(f"[red]{escape(result.status)}[/] {escape(result.name)}: {escape(result.message)}",
                              soft_wrap=True)
    counts = report.counts()
    console.print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
                  f"of {report.selected} selected in {report.seconds:.0f} s; JUnit report: "
                  f"{escape(str(report.junit))}", soft_wrap=True)
    if not report.ok:
        raise LabError(f"{counts['failed'] or 'some'} upstream test(s) failed on {report.target}"
                       + ("" if counts["failed"] else f" (e2e.test exited {report.exit_code})"),
                       f"each test's steps and the cluster's state at the failure are in {report.log}")


def verify_table(results, title: str) -> Table:
    """One row per test (test, result, seconds); names never wrap, so `| grep` finds them whole."""
    colours = {"passed": "green", "skipped": "yellow", "pending": "yellow"}
    table = Table(title=title, box=box.SIMPLE_HEAD if console.is_terminal else None, pad_edge=False)
    table.add_column("test", no_wrap=True, overflow="ignore")
    table.add_column("result", no_wrap=True, overflow="ignore")
    table.add_column("seconds", justify="right", no_wrap=True, overflow="ignore")
    for result in results:
        colour = colours.get(result.status, "red")
        table.add_row(escape(result.name), f"[{colour}]{escape(result.status)}[/]", f"{result.seconds:.1f}")
    return table


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
    from lab.host import tools

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
@target_options(namespaced=False)
def images_build(online: bool | None, load: bool, target) -> None:
    """Build (or pull) the lab's images."""
    from lab.build import images as lab_images

    from lab.cluster import kind

    built = lab_images.build(mode=_mode(online))
    if load:
        kind.load_images(target, lab_images.to_load(_mode(online)))
    for ref in built:
        console.print(f"  {escape(str(ref))}")
    console.print(f"[green]{len(built)} image{'s' if len(built) != 1 else ''} ready[/]"
                  + ("" if load else " (not loaded into the cluster)"))


# -------------------------------------------------------------------------------------- kit


@cli.group(context_settings=CONTEXT_SETTINGS)
def kit() -> None:
    """A classroom kit: the built images, the tools and the Python packages in one file, for
    machines with no Go toolchain, registry or package index."""


def _print_kit(manifest: dict) -> None:
    from lab.build import kit as lab_kit

    for line in lab_kit.describe(manifest):
        console.print(f"  {escape(line)}", soft_wrap=True)


@kit.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--without", multiple=True, metavar="PART",
              help="Leave out a part: node, images, tools or wheels. Repeatable.")
def kit_export(file: Path, without: tuple[str, ...]) -> None:
    """Write the kit to FILE, building what is missing first (the node image and images offline,
    the wheels from the package index at the versions constraints.txt locks)."""
    from lab.build import kit as lab_kit

    manifest = lab_kit.export(file, without)
    console.print(f"[green]kit written[/]: {escape(str(file))} ({lab_kit.size(file.stat().st_size)})")
    _print_kit(manifest)
    console.print(f"students: `make lab KIT={escape(str(file))}`, or copy it to {lab_kit.DEFAULT_PLACE} and `make lab`",
                  soft_wrap=True)


@kit.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def kit_import(file: Path) -> None:
    """Check every file of the kit FILE, then load its images into Docker and its tools into the
    lab cache. A kit made for other versions, or changed in any byte, is refused untouched."""
    from lab.build import kit as lab_kit

    manifest, imported = lab_kit.import_(file)
    console.print(f"[green]kit {'imported' if imported else 'already imported'}[/]: {escape(str(file))}")
    _print_kit(manifest)


@kit.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def kit_verify(file: Path) -> None:
    """Check the kit FILE against this checkout and every SHA-256 in it, importing nothing."""
    from lab.build import kit as lab_kit

    manifest = lab_kit.verify(file)
    console.print(f"[green]kit is intact and fits this checkout[/]: {escape(str(file))}")
    _print_kit(manifest)


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
@target_options()
def deploy_cmd(method: str | None, online: bool | None, delete: bool, wait: bool, timeout: int, target) -> None:
    """Install the whole lab system into the namespace k8s-assignment (or remove it)."""
    from lab.cluster import kind
    from lab.system import deploy as lab_deploy

    if delete:
        found = lab_deploy.undeploy(target, method, wait=wait, timeout=timeout)
        console.print(f"[green]lab system removed[/] from {escape(target.describe())}"
                      f"{' (' + found + ')' if found else ''}")
        return
    result = lab_deploy.deploy(target, method or "helm", mode=_mode(online), wait=wait, timeout=timeout)
    where = f": http://127.0.0.1:{kind.web_host_port(target)}/" if target.is_kind and target.namespace == "k8s-assignment" else ""
    console.print(f"[green]lab system deployed[/] in {escape(target.describe())} with {result.method} "
                  f"({result.mode} images) in {result.seconds:.0f} s{where}")


# -------------------------------------------------------------------------------------- run


def _split_note(result) -> str:
    split = result.time_split
    if not split or not result.duration_s:
        return ""
    wait, own = (round(100 * split[key] / result.duration_s) for key in (timing.WAIT, timing.LAB))
    return f": {wait}% waiting on the cluster, {own}% the lab's own work"


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

    from lab import execute

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
                progress.console.print(f"[green]passed[/] {result.notebook} ({result.duration_s:.1f} s"
                                       f"{_split_note(result)})")
            else:
                err = result.error
                where = f" in cell {err.cell_index}" if err.cell_index is not None else ""
                progress.console.print(
                    f"[red]failed[/] {result.notebook}{where} ({result.duration_s:.1f} s): "
                    f"[red]{escape(err.ename)}[/]: {escape(err.evalue)}"
                )

        report = execute.run(notebooks, parameters, out_dir=out_dir, start=start, only=only,
                            notebooks_dir=notebooks_dir, listener=listener, **kwargs)

    skipped = [r.notebook for r in report.results if r.status == "not run"]
    if skipped:
        console.print(f"[yellow]not run:[/] {', '.join(skipped)}")
    console.print(f"executed notebooks and report: {escape(report.out_dir)}")
    console.print(f"report: {escape(str(Path(report.out_dir) / execute.REPORT_MD))}")
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
                     help="Backup directory (default: <the cluster's data dir>/backups, which the "
                          "nodes see as /var/local/k8s-lab/backups; backups-<namespace> for another "
                          "namespace).")(f)
    return target_options()(f)


def _print_frame(frame, title: str) -> None:
    emit(frame, "table", title)


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
def backup_create(database: str | None, target, directory: Path | None, level: int) -> None:
    """Dump DATABASE (default: every user database) into a timestamped .sql.gz with metadata."""
    from lab.ops import backup as lab_backup

    made = lab_backup.create(target, database, directory=directory, level=level)
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
def backup_restore(file: str, target, directory: Path | None, into: str | None,
                   replace: bool, check: bool, without_metadata: bool) -> None:
    """Restore FILE (a path, a name in the backup directory, or `latest`).

    The file is checked (size, sha256, gzip -t, complete dump) before the database is touched;
    the target database is then replaced by the backup's content.
    """
    from lab.ops import backup as lab_backup

    result = lab_backup.restore(target, file, into=into, directory=directory, replace=replace,
                                require_metadata=not without_metadata)
    console.print(f"[green]restored[/] {escape(result.path.name)} into "
                  f"{escape(', '.join(result.databases) or 'its databases')} in {result.seconds:.1f} s")
    if check and result.metadata is not None:
        _print_verify(lab_backup.verify(target, result.path, into=into, directory=directory))


@backup.command("verify")
@click.argument("file", required=False)
@_backup_options
@click.option("--into", metavar="NAME", help="The restored database (default: the backup's own).")
@click.option("--source", metavar="NAME", help="Compare with this live database instead of the metadata.")
def backup_verify(file: str | None, target, directory: Path | None, into: str | None,
                  source: str | None) -> None:
    """Compare row counts and CHECKSUM TABLE per table with FILE's metadata (or --source)."""
    from lab.ops import backup as lab_backup

    _print_verify(lab_backup.verify(target, file, into=into, source=source,
                                    directory=directory))


@backup.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Backup directory (default: <the cluster's data dir>/backups, or backups-<namespace>).")
@output_option
@target_options(namespaced=False)
def backup_list(directory: Path | None, output: str, target) -> None:
    """List the backups in the backup directory (of the cluster, or --dir)."""
    from lab.ops import backup as lab_backup

    directory = directory or lab_backup.backup_dir(target)
    frame = lab_backup.list_backups(directory)
    if frame.empty and output in ("table", "wide"):
        console.print(f"no backups in {escape(str(directory))}")
        return
    shown = frame if frame.empty else frame.assign(time=frame["time"].dt.strftime("%Y-%m-%d %H:%M:%SZ"),
                                                   size=frame["size"].map(lab_backup.human_size))
    emit(shown, output, f"backups in {directory}")


@backup.command("drill")
@click.option("--database", metavar="NAME", help="Back up this database only (default: every one).")
@_backup_options
@click.option("--stage", "stages", multiple=True, type=click.Choice(["pod", "statefulset", "namespace", "database"]),
              help="Only these stages, in this order (repeatable; default: pod, statefulset, namespace; `database` drops the database so that only the backup can help).")
@click.option("--yes", is_flag=True, help="Really delete the Pod, the StatefulSet and the namespace.")
def backup_drill(database: str | None, target, directory: Path | None, stages, yes: bool) -> None:
    """Disaster drill: delete the database Pod, its StatefulSet, then the namespace; recover each time."""
    from lab.ops import backup as lab_backup

    if not yes:
        raise LabError(f"the drill deletes the database Pod, StatefulSet and namespace {target.namespace}",
                       "pass --yes to run it")
    frame = lab_backup.drill(target, database=database, directory=directory,
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
              help="First run each submission's notebooks headlessly (papermill, without the solutions), "
                   "each in a classroom namespace of its own with a kubeconfig limited to it; after each "
                   "notebook the grader runs that notebook's checks itself, and only those earn points.")
@click.option("--timeout", "notebook_timeout", type=click.IntRange(min=1), default=1800, show_default=True,
              help="With --execute: seconds one notebook may run before it is stopped.")
@click.option("--cell-timeout", type=click.IntRange(min=1), default=None,
              help="With --execute: seconds one cell may run (default 1200).")
@click.option("--namespace-prefix", default="grade-", show_default=True,
              help="With --execute: a submission's namespace is this prefix plus the student's name.")
@click.option("--live", is_flag=True,
              help="Instead of reading notebooks, grade running namespaces with the grader's own checks "
                   "(instructor-only ones too): --roster for a classroom, else --namespace.")
@click.option("--context", default=None, help="The instructor's kubeconfig context the grader checks with "
                                             "(default kind-k8s-lab).")
@click.option("--namespace", default=None, help="With --live: the namespace (default k8s-assignment).")
@click.option("--roster", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with a `student` id column (optional name, email): names submissions by id and lists "
                   "who submitted nothing; with --live, grades each student's namespace student-<id>.")
@click.option("--checks", "checks_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A Python file of extra (hidden) checks registered with lab.checks.register; repeatable.")
@click.option("--keep-going/--stop-on-failure", default=True, show_default=True,
              help="With --execute: run a submission's later notebooks after one fails.")
def grade_cmd(paths, out_dir, jobs, reference_dir, execute, notebook_timeout, cell_timeout, namespace_prefix,
              live, context, namespace, roster, checks_files, keep_going) -> None:
    """Grade submissions: verified by the grader's own checks, or self-reported from their evidence.

    Each PATH is one student's directory (or zip) of executed notebooks, or a directory of such
    (a folder of students, or runs/ with one run directory each); a student directory holding
    several run directories is graded by its latest run. Without --execute or --live the points
    come from the evidence the notebooks stored and are labelled self-reported. Prints a summary,
    writes the gradebook, feedback pages and lms.csv, and flags edited outputs, copied runs
    (also of the reference notebooks), forged evidence and deleted checkpoints.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lab.cluster import classroom
    from lab.grading import grade as grader

    grader.load_checks(checks_files)
    students = classroom.read_roster(roster) if roster else None
    if live:
        if paths or execute:
            raise LabError("--live checks a cluster, not submissions", "drop the PATHs and --execute, or drop --live")
        _grade_live(grader, context, namespace, out_dir, students, jobs, reference_dir)
        return
    if not paths:
        raise LabError("name at least one submission directory",
                       "e.g. `lab grade submissions/` or `lab grade runs/`; `lab grade --live` checks a cluster")
    out = out_dir or grader.default_out_dir()

    def bar(description: str) -> Progress:
        # auto_refresh off: no display thread, so worker processes fork from a single-threaded parent
        return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=console, transient=True, auto_refresh=False)

    verified_records: dict = {}
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

            sandboxes = _grade_sandboxes(grader, classroom, paths, out, namespace_prefix, context, students)
            grader.execute_all(paths, executed_dir, namespace_prefix=namespace_prefix, jobs=jobs,
                               timeout=notebook_timeout, cell_timeout=cell_timeout, listener=listener,
                               sandboxes=sandboxes, keep_going=keep_going, collect=verified_records)
        paths = (executed_dir,)

    with bar("grading") as progress:
        task = progress.add_task("grading", total=None, last="")

        def advance(done: int, total: int, student: str) -> None:
            progress.update(task, completed=done, total=total, last=student)
            progress.refresh()

        book = grader.grade(paths, reference_dir=reference_dir, jobs=jobs, progress=advance, verified=execute,
                            roster=students, grader_records=verified_records if execute else None)
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


def _grade_sandboxes(grader, classroom, paths, out, prefix, context, students):
    """A classroom namespace and limited kubeconfig per submission, so student code never runs
    with the instructor's credentials."""
    from lab import config
    from lab.progress import step

    names = [name for name, _ in grader.find_submissions(paths)]
    ids = classroom.ids_for(names, students)
    with step(f"sandboxes for {len(names)} submission(s): namespaces {prefix}<id>"):
        kubeconfigs = classroom.up([classroom.Student(i) for i in sorted(set(ids.values()))], out / "sandboxes",
                                   context=context or config.KUBE_CONTEXT, prefix=prefix)
    return {name: grader.Sandbox(f"{prefix}{ids[name]}", str(kubeconfigs[ids[name]]), context)
            for name in names}


def _grade_live(grader, context, namespace, out_dir, students, jobs, reference_dir) -> None:
    from lab import config
    from lab.cluster import classroom
    from lab.progress import step

    if students:
        targets = {s.id: s.namespace() for s in students}
    else:
        ns = namespace or config.NAMESPACE
        targets = {ns: ns}
    with step(f"the grader's checks in {len(targets)} namespace(s)"):
        book = grader.live_gradebook(targets, context=context, jobs=max(jobs, 4), reference_dir=reference_dir)
    for sub in book.submissions:
        student = next((s for s in students or [] if s.id == sub.student), None)
        sub.name, sub.email = (student.name, student.email) if student else ("", "")
    _print_gradebook(book)
    console.print(f"checked {len(book.submissions)} namespace(s) in {book.seconds:.1f} s "
                  f"(verified: the grader's own checks; {classroom.PREFIX}<id> per roster student)")
    if out_dir:
        for what, path in book.write(out_dir).items():
            console.print(f"{what}: {escape(str(path))}")


# ------------------------------------------------------------------------------------ classroom


@cli.group(context_settings=CONTEXT_SETTINGS)
def classroom() -> None:
    """A namespace per student on one shared cluster, with a kubeconfig limited to it."""


def _classroom_options(f):
    f = click.option("--context", default=None, help="The instructor's kubeconfig context (default kind-k8s-lab).")(f)
    return click.option("--prefix", default="student-", show_default=True, help="Namespace prefix.")(f)


@classroom.command("up")
@click.argument("roster", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Writes OUT/<id>/kubeconfig per student.")
@click.option("--token-hours", type=click.FloatRange(min=0.2), default=24 * 14, show_default=True,
              help="Lifetime of the students' tokens; run `up` again to renew them.")
@_classroom_options
def classroom_up(roster: Path, out_dir: Path, token_hours: float, context: str | None, prefix: str) -> None:
    """Create (or update) the classroom of ROSTER.csv."""
    from lab import config
    from lab.cluster import classroom as room
    from lab.progress import step

    students = room.read_roster(roster)
    with step(f"classroom of {len(students)} student(s)"):
        written = room.up(students, out_dir, context=context or config.KUBE_CONTEXT, prefix=prefix,
                          token_hours=token_hours)
    console.print(f"{len(written)} kubeconfig(s) in {escape(str(out_dir))}: hand each student OUT/<id>/kubeconfig "
                  f"(the notebooks take namespace = \"{prefix}<id>\" and kubeconfig = that file, or KUBECONFIG=it)")


@classroom.command("status")
@click.argument("roster", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=8, show_default=True)
@_classroom_options
def classroom_status(roster: Path, jobs: int, context: str | None, prefix: str) -> None:
    """Each student's namespace, Pods and the grader's checks passing, live."""
    from lab import config
    from lab.cluster import classroom as room

    from lab.grading import grade

    frame = grade.classroom_status(room.read_roster(roster), context=context or config.KUBE_CONTEXT, prefix=prefix,
                                   jobs=jobs)
    _print_frame(frame, "classroom")


@classroom.command("down")
@click.option("--yes", is_flag=True, help="Really delete every student's namespace and volume.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the namespaces are gone (not needed to free the names for another classroom).")
@_classroom_options
def classroom_down(yes: bool, wait: bool, context: str | None, prefix: str) -> None:
    """Delete the classroom: namespaces, PersistentVolumes, cluster roles (host directories stay)."""
    from lab import config
    from lab.cluster import classroom as room
    from lab.progress import step

    if not yes:
        raise LabError("this deletes every student's namespace and work", "add --yes")
    with step("classroom down"):
        gone = room.down(context=context or config.KUBE_CONTEXT, prefix=prefix, wait=wait)
    console.print(f"deleted {len(gone)} namespace(s)")


# ------------------------------------------------------------------------------------ probe


@cli.command("probe", context_settings=CONTEXT_SETTINGS)
@click.option("--canary", is_flag=True,
              help="First prove that the cluster enforces NetworkPolicy at all (in a namespace "
                   "of its own, removed afterwards).")
@output_option
@target_options()
def probe_cmd(canary: bool, output: str, target) -> None:
    """Measure who can connect to whom in the deployed system, against the lab's policy.

    Sources: the web Pods and a long-lived non-web probe Pod (created once, then reused).
    Destinations: the database Service on 3306 and the web Service on 80. Expected: only web
    reaches the database; everyone reaches web. Exits non-zero when a cell differs, and prints
    the kubectl command that reproduces each such cell.
    """
    from lab.ops import probe as lab_probe

    if canary:
        result = lab_probe.canary(target=target)
        console.print(f"[green]canary:[/] {escape(result.message)}")
    df = lab_probe.lab_matrix(target)
    shown = df.assign(ok=df["correct"])
    emit(shown, output, f"lab probe: {target.describe()} ({df.attrs.get('seconds', 0):.1f} s)",
         narrow=["source", "source_group", "destination", "port", "expected", "observed", "ok", "attempts"])
    bad = df[~df["correct"]]
    if bad.empty:
        if output in ("table", "wide"):
            console.print(f"[green]all {len(df)} cells match the lab's policy[/]")
        return
    for row in bad.itertuples():
        err_console.print(f"[red]{escape(row.source)} -> {escape(row.destination)}:{row.port}[/]: "
                          f"expected {row.expected}, observed {row.observed}"
                          + (f" ({escape(row.detail)})" if row.detail else "")
                          + "; reproduce with:")
        err_console.print(escape(row.reproduce), soft_wrap=True, markup=False)
    raise LabError(f"{len(bad)} of {len(df)} cells differ from the lab's policy",
                   "run the commands above to see each one again; check the NetworkPolicies "
                   f"with `kubectl --context {target.kube_context} -n {target.namespace} get networkpolicy -o yaml`"
                   + lab_probe.cni_note(target))


# ----------------------------------------------------------------------------------- events


@cli.command("events", context_settings=CONTEXT_SETTINGS)
@click.option("--since", metavar="DURATION|TIME",
              help="Only events newer than this: 30s, 10m, 2h, 1d, or a time such as 2024-05-01T12:00:00Z.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every event (one row per watcher line, deduplicated) to this CSV file.")
@output_option
@target_options()
def events_cmd(since: str | None, csv_path: Path | None, output: str, target) -> None:
    """Summarize the pod watcher's events: one row per Pod with its lifecycle.

    Reads every watcher Pod's log (in the namespace, which its Role lets it watch) through the API.
    Times are UTC; the `+s` columns count seconds from the Pod's creation (Kubernetes keeps those
    times to the second).
    """
    from lab.ops import eventlog

    events = eventlog.load_events(target, since=since)
    pods = eventlog.lifecycles(events)
    if csv_path is not None:
        eventlog.to_csv(events, csv_path)
    rows = eventlog.pod_events(events)
    shown = pods.assign(created=pods["created"].map(_clock), scheduled=pods["to_scheduled_s"].map(_offset),
                        ready=pods["to_ready_s"].map(_offset), deleted=pods["lifetime_s"].map(_offset))
    emit(shown, output, f"Pods seen by the watcher in {target.describe()}" + (f" since {since}" if since else ""),
         narrow=["pod", "namespace", "node", "phase", "created", "scheduled", "ready", "deleted", "events"])
    if output not in ("table", "wide"):
        return
    kinds = rows["type"].value_counts()
    counts = ", ".join(f"{kind} {int(kinds.get(kind, 0))}" for kind in eventlog.POD_TYPES if kinds.get(kind, 0))
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


def _clock(value) -> str:
    return "" if value is None or value != value else value.strftime("%H:%M:%S")


def _offset(seconds) -> str:
    return "" if seconds is None or seconds != seconds else f"+{seconds:.0f}s"


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="lab")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

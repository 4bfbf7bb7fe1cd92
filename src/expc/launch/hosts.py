"""Hosts: an operator's hostfile (or node rank) and the manifest's hardware -> the checked hosts.

A hostfile is DeepSpeed's format, one host per line:

    # comments and blank lines are ignored
    worker-0 slots=8
    worker-1 slots=8

Where a run happens is the operator's business, not the manifest's: nothing here changes a
digest. What the manifest does fix is the shape of the job (`hardware.nodes` machines running
`hardware.procs_per_node` processes each), and the checks below hold the operator's hosts to that
shape before anything is launched, so a wrong hostfile fails in a second with its file:line rather
than after a rendezvous timeout on a cluster.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from expc.errors import ExpcError, Problem

HOST_LINE = re.compile(r"^(?P<host>\S+)\s+slots=(?P<slots>\S*)\s*(#.*)?$")
HOST_NAME = re.compile(r"^[A-Za-z0-9_.:\[\]-]+$")  # names, IPv4/IPv6 addresses; no shell characters


@dataclass(frozen=True)
class Host:
    name: str
    slots: int
    line: int  # 1-based line in the hostfile, for messages


@dataclass(frozen=True)
class Hostfile:
    path: Path
    hosts: tuple[Host, ...]

    def where(self, host: Host) -> str:
        return f"{self.path}:{host.line}"


def read_hostfile(path: Path | str) -> Hostfile:
    """Parse a DeepSpeed hostfile; every bad line is reported at once, each with file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExpcError(f"no such hostfile: {path}") from None
    except IsADirectoryError:
        raise ExpcError(f"{path} is a folder, not a hostfile") from None
    except UnicodeDecodeError as err:
        raise ExpcError(f"byte {err.start} is not UTF-8: a hostfile is text", str(path)) from None
    except OSError as err:
        raise ExpcError(f"cannot read the hostfile: {err.strerror or err}", str(path)) from None
    hosts: list[Host] = []
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        match = HOST_LINE.match(line)
        if not match:
            problems.append(Problem(f'expected "HOST slots=N", got "{line}"', where))
            continue
        name, slots = match["host"], match["slots"]
        if not HOST_NAME.match(name):
            problems.append(Problem(f'"{name}" is not a host name or address', where))
            continue
        # Not isdigit(), to which "²" is a digit; and a size int() reads at once.
        if not re.fullmatch(r"[0-9]{1,9}", slots) or int(slots) < 1:
            problems.append(Problem(f'slots must be a whole number of at least 1, got "slots={slots}"', where))
            continue
        if name in seen:
            problems.append(Problem(f"host {name} is listed twice (first at line {seen[name]})", where))
            continue
        seen[name] = number
        hosts.append(Host(name, int(slots), number))
    if problems:
        raise ExpcError(problems, context=str(path))
    if not hosts:
        raise ExpcError('names no hosts; expected lines like "worker-0 slots=8"', str(path))
    return Hostfile(path, tuple(hosts))


def check_hostfile(hostfile: Hostfile, hardware: dict) -> tuple[Host, ...]:
    """The hostfile's hosts, checked against the manifest's job shape; all problems at once.

    The hostfile must name exactly `hardware.nodes` hosts (a longer list is refused rather than
    silently cut, since which hosts are dropped would then depend on line order), each with at
    least `hardware.procs_per_node` slots (spare slots stay idle).
    """
    nodes, procs = hardware["nodes"], hardware["procs_per_node"]
    problems: list[Problem] = []
    count = len(hostfile.hosts)
    if count != nodes:
        named = f"{count} host{'s' if count != 1 else ''}"
        planned = f"{nodes} node{'s' if nodes != 1 else ''}"
        problems.append(Problem(
            f"names {named}, but the manifest is planned for {planned} (hardware.nodes); "
            f"list exactly the {planned} to run on", str(hostfile.path)))
    for host in hostfile.hosts:
        if host.slots < procs:
            problems.append(Problem(
                f"host {host.name} has slots={host.slots}, but the manifest runs {procs} processes "
                f"per node (hardware.procs_per_node)", hostfile.where(host)))
    if problems:
        raise ExpcError(problems, context=str(hostfile.path))
    return hostfile.hosts


def check_node_rank(node_rank: int, master_addr: str | None, hardware: dict) -> None:
    """An ssh-less per-node launch: the node rank must name one of the manifest's nodes."""
    nodes = hardware["nodes"]
    if nodes == 1:
        raise ExpcError(f"--node-rank {node_rank}: the manifest is planned for 1 node (hardware.nodes); "
                        "a per-node launch needs a multi-node manifest")
    if not 0 <= node_rank < nodes:
        raise ExpcError(f"--node-rank {node_rank} is out of range: the manifest is planned for {nodes} "
                        f"nodes (hardware.nodes), so node ranks are 0 to {nodes - 1}")
    if not master_addr:
        raise ExpcError(f"--node-rank {node_rank} needs --master-addr: the address of node 0, "
                        "which every node can reach")
    if not HOST_NAME.match(master_addr):
        raise ExpcError(f'--master-addr "{master_addr}" is not a host name or address')

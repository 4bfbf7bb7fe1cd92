"""A two-"node" cluster on one machine for the real pdsh and mpirun paths: a private sshd.

The tests install what they need with apt when it is missing (`openssh-server` and
`openssh-client` for the cluster, `pdsh` or `openmpi-bin` for the launcher tried; outside CI a
test skips when it cannot install them, in CI it fails: see `ensure_packages`), then start their
own `sshd` in the foreground on two loopback addresses (127.0.0.2 and 127.0.0.3), on a free high
port, with a fresh host key, a throwaway client key and its own config. An `ssh` wrapper first on
PATH points every ssh call (DeepSpeed's reachability check, pdsh's ssh module) at that config, so
the machine's own ssh settings and any system sshd are left alone.

Nothing here stands in for the real thing: DeepSpeed's launcher runs pdsh, pdsh runs ssh, sshd
runs the launch command on each "node" exactly as on a cluster; only the addresses are local.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ADDRESSES = ("127.0.0.2", "127.0.0.3")
# Each maps a program to the Debian package that provides it; each test asks for its own set.
SSH_PACKAGES = {"sshd": "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client"}
PDSH_PACKAGES = {"pdsh": "pdsh"}
MPI_PACKAGES = {"mpirun": "openmpi-bin", "ompi_info": "openmpi-bin"}
SBIN = ("/usr/sbin", "/sbin")
_apt_updated: str | None = None  # "ok", or why `apt-get update` failed: it runs once per session


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str):
    """Skip the test outside CI; fail it in CI (CI set), where these launch paths must really run."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def ensure_packages(packages: dict[str, str]) -> None:
    """Install the Debian packages whose programs are missing; skip (outside CI) or fail (in CI)
    when apt cannot be used. `packages` maps a program to the package that provides it."""
    global _apt_updated
    missing = sorted({package for binary, package in packages.items() if not which(binary)})
    if not missing:
        return
    needs = f"needs the Debian package(s) {', '.join(missing)}"
    if not shutil.which("apt-get"):
        unavailable(f"{needs} and there is no apt-get to install them")
    if os.geteuid() != 0:
        unavailable(f"{needs}; installing them with apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if _apt_updated is None:
        done = subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=600)
        _apt_updated = "ok" if done.returncode == 0 else done.stderr.strip()[-500:]
    if _apt_updated != "ok":
        unavailable(f"{needs}; apt-get update failed: {_apt_updated}")
    done = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        unavailable(f"{needs}; apt-get install failed: {done.stderr.strip()[-500:]}")
    still = sorted(binary for binary in packages if not which(binary))
    if still:
        unavailable(f"{needs}; after installing them, {', '.join(still)} still cannot be found")


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


@dataclass
class LoopbackCluster:
    folder: Path
    port: int
    sshd: subprocess.Popen
    hosts: tuple[str, ...] = ADDRESSES

    @property
    def bin(self) -> Path:
        return self.folder / "bin"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose `ssh` is the wrapper (pdsh and DeepSpeed find ssh on PATH)."""
        base = dict(os.environ if base is None else base)
        base["PATH"] = f"{self.bin}{os.pathsep}{base.get('PATH', '')}"
        return base

    def hostfile(self, slots: int = 1) -> Path:
        path = self.folder / "hosts.txt"
        path.write_text("".join(f"{host} slots={slots}\n" for host in self.hosts))
        return path

    def stop(self) -> None:
        """Stop sshd and everything its sessions started (a failed test can leave ranks behind);
        only this sshd's own descendants are touched."""
        for pid in descendants(self.sshd.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.sshd.terminate()
        try:
            self.sshd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.sshd.kill()
            self.sshd.wait()


def descendants(root: int) -> list[int]:
    """Every live process below `root`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def start_cluster(folder: Path) -> LoopbackCluster:
    """sshd on the loopback addresses; the caller has installed SSH_PACKAGES (ensure_packages)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    keygen = which("ssh-keygen")
    for key in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = free_port(ADDRESSES[0])
    (folder / "sshd_config").write_text("\n".join([
        f"Port {port}",
        *(f"ListenAddress {address}" for address in ADDRESSES),
        f"HostKey {folder / 'host_key'}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "StrictModes no",  # the key files live in a pytest temp folder
        "UsePAM no",
        "LogLevel ERROR",
        "",
    ]))
    (folder / "ssh_config").write_text("\n".join([
        "Host *",
        f"  Port {port}",
        f"  IdentityFile {folder / 'client_key'}",
        "  IdentitiesOnly yes",
        "  UserKnownHostsFile /dev/null",
        "  StrictHostKeyChecking no",
        "  BatchMode yes",
        "  LogLevel ERROR",
        "",
    ]))
    (folder / "bin").mkdir(exist_ok=True)
    wrapper = folder / "bin" / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {which("ssh")} -F {folder / "ssh_config"} "$@"\n')
    wrapper.chmod(0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder, absent on a bare machine
    log = open(folder / "sshd.log", "w")
    sshd = subprocess.Popen([which("sshd"), "-D", "-e", "-f", str(folder / "sshd_config")],
                            stdout=log, stderr=subprocess.STDOUT)
    cluster = LoopbackCluster(folder, port, sshd)
    deadline = time.monotonic() + 20
    while True:
        probe = subprocess.run(["ssh", ADDRESSES[-1], "true"], env=cluster.env(), capture_output=True,
                               text=True, timeout=30)
        if probe.returncode == 0:
            return cluster
        if sshd.poll() is not None or time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"private sshd did not come up: {probe.stderr}\n"
                               f"{(folder / 'sshd.log').read_text()}")
        time.sleep(0.2)

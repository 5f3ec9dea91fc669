"""A private SeaweedFS (Apache-2.0) for the benchmarks: the S3 gateway baseline of
bench/portal_s3.py, built and started on demand, stopped and cleaned up by ``stop``.

``weed`` is built from the Go module proxy by bench/seaweedfs.sh (into var/cache/bin, once;
several minutes on 2 cores); ``build()`` runs it and says why when it cannot. ``SeaweedFS``
runs ``weed server`` with master, volume server, filer and S3 gateway in one process, bound to
127.0.0.1 only, every port (HTTP and gRPC) a free one, its data and the filer's and gateway's
Unix sockets under the given home (its gRPC sockets it names under /tmp itself: ``stop``
removes them), telemetry off. The gateway serves HTTPS on its one port with the certificate and
key it is given (the portal's, as nginx does: same key type, same handshake) and knows one
identity, from its S3 config JSON, allowed every action. Go's server offers HTTP/2 where the
portal and nginx do not: clients that would take it (rclone) are told not to.

SeaweedFS's defaults stand otherwise: objects cut into 4 MiB chunks, and no fsync of what it
writes (a filer path rule would turn it on), where the portal fsyncs each upload.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from sftp import _free_port, _listens

ROOT = Path(__file__).resolve().parent.parent


def build() -> Path:
    """The ``weed`` binary, built by bench/seaweedfs.sh when missing; RuntimeError saying why
    when it cannot be."""
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "seaweedfs.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"SeaweedFS did not build: {result.stderr.strip()[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


class SeaweedFS:
    """``weed server -filer -s3`` under ``home`` on 127.0.0.1, HTTPS with ``cert``/``key``,
    one S3 identity ``access``/``secret``; its gateway accepts connections once constructed
    (its filer and volumes follow: the first requests may wait or fail)."""

    def __init__(
        self, weed: Path, home: Path, cert: Path, key: Path, access: str, secret: str
    ) -> None:
        self.home = home
        self.version = subprocess.run(
            [str(weed), "version"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
        self.data = home / "data"
        self.data.mkdir(parents=True)
        self.port = _free_port()
        self._grpc: list[int] = []
        config = home / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "bench",
                            "credentials": [{"accessKey": access, "secretKey": secret}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        ports: list[str] = []
        for service in ("master", "volume", "filer"):
            grpc = _free_port()
            self._grpc.append(grpc)
            ports += [f"-{service}.port={_free_port()}", f"-{service}.port.grpc={grpc}"]
        s3_grpc = _free_port()
        self._grpc.append(s3_grpc)
        self.log = home / "weed.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(weed), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    f"-dir={self.data}", "-master.telemetry=false", "-volume.preStopSeconds=0",
                    # volumes as the disk allows (the default, 8, runs out within two 1 GiB PUTs)
                    "-master.volumeSizeLimitMB=1024", "-volume.max=0", *ports,
                    "-filer", f"-filer.localSocket={home}/filer.sock",
                    "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={s3_grpc}",
                    "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.localSocket={home}/s3.sock",
                    f"-s3.config={config}", f"-s3.cert.file={cert}", f"-s3.key.file={key}",
                ],
                cwd=home, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait()

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _wait(self) -> None:
        """Until the gateway accepts connections (its filer and volumes come a little later)."""
        if not _listens(self.process, self.port, 120):
            self.stop()
            raise RuntimeError(f"SeaweedFS did not start: {self.log.read_text()[-3000:]}")

    def files(self, bucket: str) -> list[Path]:
        """The volume files of ``bucket`` (its own collection), for the caller to read into the
        page cache before a timed GET."""
        return sorted(self.data.rglob(f"{bucket}_*.dat"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # its in-process gRPC services listen on Unix sockets it names under /tmp itself
        for name in ("master", "volume", "filer", "s3"):
            for grpc in self._grpc:
                path = Path(f"/tmp/seaweedfs-{name}-grpc-{grpc}.sock")
                if path.is_socket():
                    os.unlink(path)

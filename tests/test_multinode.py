"""The multi-node recipe of docs/reproducing.md, on one machine: two torchrun "nodes" of one
process each (static rendezvous on 127.0.0.1, gloo) train exactly what one node with two
processes trains. Both runs have world size 2 and the same global ranks; only the node a rank
runs on differs, so on the CPU every tensor and every metric must be equal bit for bit."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from udass import checkpoint as ckpt

REPO = Path(__file__).resolve().parent.parent
TRAIN = ["-m", "udass", "train", "--profile", "test", "--method", "source_only", "--backbone", "vit",
         "--steps", "2", "--checkpoint-every", "2", "--set", "data.batch_source=1", "--device", "cpu"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--master-addr", "127.0.0.1",
            "--master-port", str(_free_port()), *args]


def _finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            _, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, err[-3000:]


def _losses(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv", newline="") as f:
        return [{k: v for k, v in row.items() if "time" not in k and "second" not in k}
                for row in csv.DictReader(f)]


def test_two_nodes_of_one_process_match_one_node_of_two(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one-node", tmp_path / "two-nodes"
    nodes = _torchrun("--nnodes", "2", "--nproc-per-node", "1")
    commands = [_torchrun("--nnodes", "1", "--nproc-per-node", "2", *TRAIN, "--out", str(one)),
                *(nodes[:3] + ["--node-rank", str(r)] + nodes[3:] + [*TRAIN, "--out", str(two)]
                  for r in (0, 1))]
    _finish([subprocess.Popen(c, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for c in commands])
    a = torch.load(ckpt.last_checkpoint(one), weights_only=False)
    b = torch.load(ckpt.last_checkpoint(two), weights_only=False)
    assert a["step"] == b["step"] == 2 and a["world_size"] == b["world_size"] == 2
    for part in ("student", "teacher"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(v, b[part][k]) for k, v in a[part].items()), part
    ma, mb = (json.loads((o / "metrics.json").read_text()) for o in (one, two))
    for key in ("miou", "per_class_iou", "teacher", "step"):
        assert ma[key] == mb[key], key
    assert _losses(one) == _losses(two) and len(_losses(one)) == 2
    assert len(list(two.glob("checkpoints/*.pt"))) == len(list(one.glob("checkpoints/*.pt")))

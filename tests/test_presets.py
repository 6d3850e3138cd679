"""The presets as data (udass.config: PROFILE_PRESETS, BACKBONE_PRESETS, KIND_PRESETS,
BENCHMARK_PRESETS, RECIPE_PRESETS): every benchmark x backbone x method x profile builds exactly the Config
recorded in tests/fixtures/presets.json, the tables' keys name things that exist, and the order
of application is the documented one.

The fixture holds the Config defaults and, per combination, the dotted fields that differ from
them. A deliberate change of a preset changes the fixture with it; regenerate it with
`python tests/test_presets.py --write` and review the diff.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from udass.benchmarks import BENCHMARKS
from udass.config import (ANY, BACKBONE_PRESETS, BACKBONES, BENCHMARK_PRESETS, KIND_PRESETS, METHODS,
                          PROFILE_PRESETS, PROFILES, Config, all_keys, build_config,
                          preset_overrides)

FIXTURE = Path(__file__).parent / "fixtures" / "presets.json"
COMBINATIONS = [(b, bb, m, p) for b in BENCHMARKS for bb in BACKBONES for m in METHODS for p in PROFILES]


def _flat(cfg: Config) -> dict[str, str]:
    """Dotted key -> JSON text of the value (so 1 and 1.0, a list and a string, differ)."""
    d = json.loads(json.dumps(cfg.to_dict()))
    return {f"{s}.{k}": json.dumps(v) for s, sec in d.items() for k, v in sec.items()}


def _recorded() -> dict:
    return json.loads(FIXTURE.read_text())


def test_every_combination_builds_the_recorded_config():
    rec = _recorded()
    defaults = {k: json.dumps(v) for k, v in rec["defaults"].items()}
    assert defaults == _flat(Config()), "the Config defaults changed"
    assert sorted(rec["presets"]) == sorted(":".join(c) for c in COMBINATIONS)
    for combo in COMBINATIONS:
        expected = {**defaults, **{k: json.dumps(v) for k, v in rec["presets"][":".join(combo)].items()}}
        got = _flat(build_config(*combo))
        diff = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
        assert not diff, f"{':'.join(combo)}: (recorded, built) {diff}"


def test_the_tables_name_existing_keys_and_choices():
    keys = set(all_keys())
    kinds = {b.kind for b in BENCHMARKS.values()}
    for table, dims in ((PROFILE_PRESETS, (PROFILES,)), (BACKBONE_PRESETS, (BACKBONES, PROFILES)),
                        (KIND_PRESETS, (kinds, PROFILES)),
                        (BENCHMARK_PRESETS, (BENCHMARKS, BACKBONES, PROFILES))):
        for key, overrides in table.items():
            parts = key if isinstance(key, tuple) else (key,)
            assert len(parts) == len(dims), key
            for part, choices in zip(parts, dims):
                assert part == ANY or part in choices, f"{key}: {part!r} matches nothing"
            assert set(overrides) <= keys, f"{key}: unknown keys {set(overrides) - keys}"


def test_later_tables_and_specific_entries_win():
    # profile (lambda_T 1.0 in test) < benchmark (VIPER: 0.2); (backbone, profile) lr < benchmark x cnn
    over = preset_overrides("viper2cityscapes-seq", "cnn", "dacs", "paper")
    assert over["train.lambda_t"] == 0.2 and over["optim.lr"] == 1e-4 and over["optim.name"] == "sgd"
    assert preset_overrides("viper2cityscapes-seq", "vit", "dacs", "paper")["optim.lr"] == 6e-5
    assert preset_overrides("viper2cityscapes-seq", "cnn", "dacs", "demo")["train.lambda_t"] == 0.0
    # ANY matches every profile; the (kind, paper) entry comes after the (kind, ANY) one
    assert preset_overrides("synthetic-video", "vit", "quadmix", "test")["data.flow_source"] == "exact"
    assert "data.flow_source" not in preset_overrides("gtav2cityscapes", "vit", "quadmix", "test")
    single = preset_overrides("gtav2cityscapes", "vit", "quadmix", "paper", recipes=False)
    assert single["data.crop_size"] == (512, 512)
    # the last table, RECIPE_PRESETS: the paper image profile is the authors' recipe (HRDA crop)
    full = preset_overrides("gtav2cityscapes", "vit", "quadmix", "paper")
    assert full["data.crop_size"] == (1024, 1024) and full["model.hrda"] and full["mic.enabled"]
    # the caller's overrides and shortcuts win over every table
    cfg = build_config("viper2cityscapes-seq", "cnn", "dacs", "paper", {"optim.lr": 3e-4}, seed=4)
    assert cfg.optim.lr == 3e-4 and cfg.train.seed == 4 and cfg.train.lambda_t == 0.2


def _write() -> None:
    """Record the presets of the code as it is (one line per combination)."""
    defaults = json.loads(json.dumps({k: json.loads(v) for k, v in _flat(Config()).items()}))
    lines = ["{", f' "defaults": {json.dumps(defaults, sort_keys=True)},', ' "presets": {']
    rows = []
    for combo in sorted(COMBINATIONS):
        flat = {k: json.loads(v) for k, v in _flat(build_config(*combo)).items()}
        diff = {k: v for k, v in flat.items() if v != defaults[k] or type(v) is not type(defaults[k])}
        rows.append(f'  {json.dumps(":".join(combo))}: {json.dumps(diff, sort_keys=True)}')
    FIXTURE.write_text("\n".join(lines + [",\n".join(rows), " }", "}"]) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/test_presets.py --write")
    _write()
    pytest.main([__file__, "-q"])

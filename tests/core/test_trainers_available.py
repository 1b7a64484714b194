"""A TRL without one of the experimental trainers wow uses is said at import and refused before any work."""
import subprocess
import sys

import pytest

from wow_core import train
from wow_core.config import ConfigError, parse_config

CONFIG = {"datasets": [{"name": "nlgraph_shortest_path", "n_questions": 4}],
          "alignment": {"preference_sets": [{"method": "oracle"}], "grid": {"loss": ["dpo", "orpo", "simpo"]}}}


def test_the_locked_trl_has_every_trainer():
    assert train.MISSING_TRAINERS == {}
    train.check_trainers(parse_config(CONFIG), "c.yaml")  # no error


def test_a_loss_without_its_trainer_is_refused_naming_the_field(monkeypatch):
    monkeypatch.setattr(train, "MISSING_TRAINERS", {"orpo": "trl.experimental.orpo"})
    with pytest.raises(ConfigError) as err:
        train.check_trainers(parse_config(CONFIG), "c.yaml")
    assert str(err.value).startswith("c.yaml: field 'alignment.grid.loss': loss 'orpo' needs trl.experimental.orpo, "
                                     "which trl ")
    assert "install the locked TRL (scripts/setup)" in str(err.value)
    # A grid of DPO losses only is untouched.
    train.check_trainers(parse_config({**CONFIG, "alignment": {"preference_sets": [{"method": "oracle"}]}}), "c.yaml")


def test_a_trl_without_the_module_warns_at_import():
    # A fresh interpreter in which trl.experimental.orpo cannot be found.
    code = ("import importlib.util, warnings\n"
            "real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'trl.experimental.orpo' else real(name, *a)\n"
            "warnings.simplefilter('always')\n"
            "import wow_core.train as t\n"
            "print(sorted(t.MISSING_TRAINERS))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['orpo']"
    assert "has no ['trl.experimental.orpo']: losses ['orpo'] cannot train" in out.stderr

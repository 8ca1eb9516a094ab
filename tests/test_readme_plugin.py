"""README's plugin example is true: its code and recipe, written out as ``mypkg``, are listed by
``python -m argse.experts --set plugins=[mypkg.focal]`` and train at the demo's length with the command it gives."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.tiny_run import REPO


def test_the_readme_plugin_is_listed_and_trains_at_the_demo_s_length(tmp_path):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(# mypkg/focal\.py\n.*?)```", readme, re.S)[1]
    recipe = re.search(r"```yaml\n(\s*epochs: 200\n.*?)```", readme, re.S)[1]
    (tmp_path / "mypkg" / "recipes").mkdir(parents=True)
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "focal.py").write_text(code)
    (tmp_path / "mypkg" / "recipes" / "focal.yaml").write_text("\n".join(line.strip() for line in recipe.splitlines()))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    listed = subprocess.run([sys.executable, "-m", "argse.experts", "--set", "plugins=[mypkg.focal]"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "focal" in listed.stdout and "Focal loss (Lin et al. 2017)" in listed.stdout
    args = re.search(r'`make experts EXPERTS=focal CONFIG=configs/demo.yaml ARGS="([^"]+)"`', readme)[1].split()
    train = [sys.executable, "-m", "argse.train_experts", "--config", str(REPO / "configs" / "demo.yaml"),
             "--experts", "focal", *args, "--set", f"output_dir={tmp_path}/o", "--set", f"checkpoint_dir={tmp_path}/c"]  # fmt: skip
    trained = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    assert "recipe of focal: warmup_epochs 5 -> 1" in trained.stderr and "epochs 200 -> 15" in trained.stderr
    assert list((tmp_path / "o" / "demo" / "stages").glob("expert-focal-*/test.safetensors"))

"""The README's Python example runs as written (with a smaller budget)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = code.replace("100_000", "2_048")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert (tmp_path / "ppo_cartpole.safetensors").is_file()
    assert (scope["run"].run_dir / "eval.json").is_file()
    assert scope["action"].shape == () and scope["actions"].shape == (8,)


def test_readme_opens_with_the_two_setup_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert all("pip install torch==2.13.0" in c for c in commands)
    assert commands[0].endswith("deeprl-train") and commands[1].endswith("pytest")
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci

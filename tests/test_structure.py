"""Project rules that keep the parts apart and the docs honest."""

import re
import subprocess
import sys
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_web_app_never_imports_torch_or_bertopic():
    code = (
        "import sys; from shared.settings import Settings; from web import create_app; "
        "create_app(Settings(redis_url='redis://127.0.0.1:1/0', _env_file=None)); "
        "import web.wsgi  # noqa\n"
        "heavy = sorted(m for m in ('torch', 'bertopic', 'sentence_transformers', 'transformers', 'umap') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                            env={"TOPICQ_REDIS_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == ""


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [f"TOPICQ_{name.upper()}" for name in Settings.model_fields if f"TOPICQ_{name.upper()}" not in readme]
    assert missing == []


def test_every_setting_has_a_description():
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_readme_first_screen_gives_the_two_commands():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    commands = re.findall(r"^\s*(make \w+)\s*$", first_screen, flags=re.MULTILINE)
    assert commands == ["make run", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()

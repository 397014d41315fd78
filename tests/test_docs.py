"""The prose states the profiles as miakit.config defines them (no number typed twice may drift)."""
from pathlib import Path

import pytest

from miakit import config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_reproduce_page_profile_row_matches_config(profile):
    rows = [line for line in (ROOT / "book/reproduce.md").read_text().splitlines()
            if line.startswith(f"| `{profile}`")]
    assert len(rows) == 1
    p = config.PROFILES[profile]
    for text in (f"{p['resolution']}x{p['resolution']}", f"{p['n_members']} members",
                 f"{p['n_nonmembers']} nonmembers"):
        assert text in rows[0], f"reproduce.md says something else than config for {profile}: {text}"


def test_readme_gives_the_ci_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci/run").read_text()

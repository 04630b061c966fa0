"""Progress bars: widgets when someone watches a live Jupyter kernel, nothing when a notebook runs in
batch (papermill, nbmake), text in a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
from mae_utils.util.progress import batch_kernel, tqdm
from mae_utils.app.tutorial import LiveLossPlot
bar = tqdm(total=3)
print(batch_kernel(), type(bar).__module__, bar.disable, LiveLossPlot().live)
bar.close()
"""


def _run_in_kernel(allow_stdin: bool) -> str:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    try:
        lines = []

        def collect(msg):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                lines.append(msg["content"]["text"])

        reply = kc.execute_interactive(PROBE, allow_stdin=allow_stdin, output_hook=collect, timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(lines).strip()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_live_kernel_gets_widgets_and_batch_kernel_no_bars():
    assert _run_in_kernel(allow_stdin=True) == "False tqdm.notebook False True"  # JupyterLab, VS Code
    assert _run_in_kernel(allow_stdin=False) == "True tqdm.std True False"  # nbclient: papermill, nbmake


def test_terminal_gets_text_bars():
    from mae_utils.util.progress import batch_kernel, tqdm

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = tqdm(total=1, file=Terminal())
    assert type(bar).__module__ == "tqdm.std" and not batch_kernel() and not bar.disable
    bar.close()


def test_redirected_output_gets_no_bars_but_the_epoch_lines(tmp_path):
    """A nohup'd run's log filled with carriage-return bars."""
    import subprocess
    import sys

    from tiny_runs import TINY_FLAGS, subprocess_env

    log = tmp_path / "log.out"
    with open(log, "w") as fh:
        code = subprocess.run([sys.executable, "-m", "mae_utils", "train", "--out-dir", str(tmp_path / "run"),
                               "--max-images", "24", *TINY_FLAGS], cwd=ROOT, env=subprocess_env(), stdout=fh,
                              stderr=subprocess.STDOUT, timeout=300).returncode  # fmt: skip
    text = log.read_bytes().decode()  # bytes: read_text would turn the bars' carriage returns into newlines
    assert code == 0 and "\r" not in text, text[-2000:]
    assert "epoch 1/2:" in text and "epoch 2/2:" in text

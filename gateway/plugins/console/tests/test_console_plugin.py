"""The console plugin is a live view: Delivery prints each item as it is appended."""

from __future__ import annotations

import io
import json
from pathlib import Path

from gateway.config import OutboxConfig
from gateway.delivery import Delivery
from gateway.model import Sample
from gateway.plugins import registry
from tests.plugin_support import sample_sinks

HERE = Path(__file__).resolve().parents[1]


def test_the_readme_sample_prints_each_sample_at_once(tmp_path: Path) -> None:
    assert registry().sinks["console"].live
    out = io.StringIO()
    outbox = OutboxConfig(path=str(tmp_path / "ob.sqlite"))
    d = Delivery("park", sample_sinks(HERE), outbox, stdout=out)
    d.append_sample(Sample(device="d1", kind="k", ts_ns=1, values={"t": 1.5}))
    assert json.loads(out.getvalue())["values"] == {"t": 1.5}
    assert d.outbox is None and d.sinks == []  # a live view needs no outbox

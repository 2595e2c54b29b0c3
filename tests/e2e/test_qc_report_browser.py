"""The QC report's page in a real browser: Debian's ``chromium`` driven by ``playwright`` (its own browser
download cannot be reached, so ``executable_path`` points at the Debian binary).

A report of phantom outputs from three real ``nnspine`` commands (``csa``, ``lesions``, ``evaluate lesions``,
each with ``--qc-report``) plus a hostile file name; the test walks it with the keys, marks one entry Fail and
one Artifact, reloads (marks kept), saves the YAML files and the state, searches, filters and toggles the
overlay. Skips, saying so, when chromium or playwright is missing, except under CI (``CI`` set), where
``.ci/run`` installs chromium and the ``test`` extra installs playwright, and a missing one fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

CHROMIUM = os.environ.get("NNSPINE_CHROMIUM", "/usr/bin/chromium")
HOSTILE = "sub-<img src=x onerror=alert(1)>_T2w.nii.gz"
QUOTED = 'sub-"quo\'ted"_T1w.nii.gz'
SCREENSHOT = Path("/tmp/qc_report_screenshot.png")

pytestmark = pytest.mark.slow


def _browser_or_skip():
    """playwright's sync API, or a skip (a failure under CI) naming what is missing."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("playwright (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        missing.append(f"chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        message = "missing " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"{message} under CI: .ci/run installs chromium, the test extra playwright")
        pytest.skip(message)
    return sync_playwright


def _nnspine(*args: str) -> None:
    r = subprocess.run(["nnspine", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report of three commands' outputs on phantoms, with a hostile and a quoted file name among them."""
    _browser_or_skip()  # before any work
    work = tmp_path_factory.mktemp("qc_browser")
    _nnspine("phantom", "--kind", "lesion", "-o", str(work / "lesion"), "-q")
    _nnspine("phantom", "--kind", "cord", "-o", str(work / "cord"), "-q")
    qc = work / "qc"
    pred = work / "lesion" / "derivatives" / "prediction"
    labels = work / "lesion" / "derivatives" / "labels"
    _nnspine("lesions", "-i", str(pred), "--cord", str(labels), "--image", str(work / "lesion"),
             "-o", str(work / "out_lesions"), "--table", str(work / "lesions.csv"),
             "--qc-report", str(qc), "-q")  # fmt: skip
    masks = work / "masks"
    masks.mkdir()
    for src in sorted((work / "cord" / "derivatives" / "labels").rglob("*_label-SC_seg.nii.gz"))[:2]:
        shutil.copy(src, masks / src.name)
    shutil.copy(src, masks / QUOTED)
    _nnspine("csa", "-i", str(masks), "-o", str(work / "csa.csv"), "--qc-report", str(qc), "-q")
    _nnspine("evaluate", "lesions", "--pred", str(pred), "--ref", str(labels), "-o", str(work / "metrics.csv"),
             "--qc-report", str(qc), "-q")  # fmt: skip
    hostile = work / "hostile"
    hostile.mkdir()
    shutil.copy(next(pred.rglob("*.nii.gz")), hostile / HOSTILE)
    _nnspine("lesions", "-i", str(hostile / HOSTILE), "-o", str(work / "hostile_out.nii.gz"),
             "--table", str(work / "hostile.csv"), "--qc-report", str(qc), "-q")  # fmt: skip
    return qc


def _entries(report: Path) -> list[dict]:
    """The entries in the page's order: by date, then id (as the JSON files say)."""
    records = [json.loads(p.read_text()) for p in (report / "entries").glob("*.json")]
    return sorted(records, key=lambda r: (r["date"], r["id"]))


def _go_to(page, entries: list[dict], target: dict) -> None:
    """Select ``target`` from the first entry with ↓ presses (the list unfiltered)."""
    current = entries.index(next(e for e in entries if e["id"] == page.get_attribute("body", "data-selected")))
    key = "ArrowDown" if entries.index(target) >= current else "ArrowUp"
    for _ in range(abs(entries.index(target) - current)):
        page.keyboard.press(key)
    assert page.get_attribute("body", "data-selected") == target["id"]


def _row_text(page, entry_id: str) -> list[str]:
    return page.locator(f'#table-body .row[data-id="{entry_id}"] span').all_inner_texts()


def test_report_in_chromium(report, tmp_path):
    sync_playwright = _browser_or_skip()
    entries = _entries(report)
    assert {e["command"] for e in entries} == {"csa", "lesions", "evaluate lesions"}
    fail = next(e for e in entries if e["command"] == "lesions" and e["file"].startswith("sub-01/"))
    artifact = next(e for e in entries if e["command"] == "csa" and e["file"] != QUOTED)
    hostile = next(e for e in entries if e["file"] == HOSTILE)
    url = (report / "index.html").resolve().as_uri()
    dialogs, requests, errors = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 800})
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")

        # the first entry is selected; its pictures load from disk
        assert page.get_attribute("body", "data-selected") == entries[0]["id"]
        page.wait_for_function("document.getElementById('background').naturalWidth > 0")
        assert page.evaluate("document.getElementById('overlay').naturalWidth") > 0

        # ↓ / ↑ walk the list; → toggles the overlay
        page.keyboard.press("ArrowDown")
        assert page.get_attribute("body", "data-selected") == entries[1]["id"]
        page.keyboard.press("ArrowUp")
        assert page.get_attribute("body", "data-selected") == entries[0]["id"]
        assert page.locator("#overlay").is_visible()
        page.keyboard.press("ArrowRight")
        assert page.locator("#overlay").is_hidden() and page.locator("#background").is_visible()
        page.keyboard.press("ArrowRight")
        assert page.locator("#overlay").is_visible()

        # f cycles Pass, Fail, Artifact; a digit ranks
        _go_to(page, entries, fail)
        page.keyboard.press("f")
        page.keyboard.press("f")
        page.keyboard.press("7")
        _go_to(page, entries, artifact)
        for _ in range(3):
            page.keyboard.press("f")
        assert _row_text(page, fail["id"])[-2:] == ["\u274c", "7"]
        assert _row_text(page, artifact["id"])[-2] == "\u26a0\ufe0f"

        # marks survive a reload
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert _row_text(page, fail["id"])[-2:] == ["\u274c", "7"]
        assert _row_text(page, artifact["id"])[-2] == "\u26a0\ufe0f"

        # Save Fails / Save Artifacts: manual-correction's layout, exactly the marked files
        with page.expect_download() as info:
            page.click("#save-fails")
        assert info.value.suggested_filename == "qc_fail.yml"
        fails = tmp_path / "qc_fail.yml"
        info.value.save_as(fails)
        assert yaml.safe_load(fails.read_text()) == {"FILES_LESION": [fail["file"]]}
        with page.expect_download() as info:
            page.click("#save-artifacts")
        assert info.value.suggested_filename == "qc_artifact.yml"
        assert yaml.safe_load(Path(info.value.path()).read_text()) == {"FILES_SEG": [artifact["file"]]}
        from nnunet_spine.core.qc_yml import read_case_list

        assert read_case_list(fails).matches(fail["file"])  # the file --exclude-yml reads back

        # Save all, then Load restores the marks into a browser that lost them
        with page.expect_download() as info:
            page.click("#save-all")
        state = tmp_path / "qc_state.json"
        info.value.save_as(state)
        page.evaluate("window.localStorage.clear()")
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert _row_text(page, fail["id"])[-2] == ""
        page.set_input_files("#load-file", str(state))
        page.wait_for_function("document.getElementById('status').textContent.startsWith('loaded')")
        assert _row_text(page, fail["id"])[-2:] == ["\u274c", "7"]

        # / then several words: ANDed
        body_rows = page.locator("#table-body .row")
        page.keyboard.press("/")
        page.keyboard.type("csa T1w")
        expected = [e for e in entries if e["command"] == "csa" and "t1w" in json.dumps(e).lower()]
        assert body_rows.count() == len(expected) < len(entries)
        page.keyboard.press("Escape")
        page.fill("#search", "")
        page.select_option("#command-filter", "evaluate lesions")
        assert body_rows.count() == sum(e["command"] == "evaluate lesions" for e in entries)
        page.select_option("#command-filter", "")

        # the hostile name is text: no element made from it, no dialog, no script run
        page.fill("#search", "onerror")
        assert body_rows.count() == 1
        cells = _row_text(page, hostile["id"])
        assert HOSTILE in cells and "sub-<img src=x onerror=alert(1)>" in cells
        assert page.locator("#table-body img, #details img").count() == 0
        assert page.locator("#details dd", has_text=HOSTILE).count() >= 1
        page.fill("#search", "quo'ted")
        assert body_rows.count() == 1 and QUOTED in _row_text(page, body_rows.first.get_attribute("data-id"))
        page.fill("#search", "")
        page.keyboard.press("Escape")
        _go_to(page, entries, fail)
        page.screenshot(path=str(tmp_path / "qc_report.png"))
        page.screenshot(path=str(SCREENSHOT))
        browser.close()
    assert dialogs == [] and errors == []
    assert all(u.startswith(("file:", "blob:", "data:")) for u in requests), requests

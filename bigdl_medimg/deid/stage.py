"""``Deidentify``: the confidentiality profile applied to the metadata columns of a reader DataFrame."""

import os
import re
from functools import lru_cache
from typing import Self

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..errors import ConfigError
from ..params import param
from .profile import BURNED_IN_MODALITIES, DATE_MODES, SECONDARY_CAPTURE_CLASSES, Pseudonymizer, action_for

__all__ = ["Deidentify", "KEY_ENV", "scrub_paths"]

KEY_ENV = "BIGDL_MEDIMG_DEID_KEY"
PATH_MODES = ("hash", "drop", "keep")
#: identifier columns -> pseudonym prefix
ID_COLUMNS = {"patient_id": "PID", "other_patient_ids": "PID", "accession_number": "ACC", "study_id": "STU",
              "issuer_of_patient_id": "ISS", "mrn": "PID", "case": "CASE"}
NAME_COLUMNS = ("patient_name", "referring_physician_name", "performing_physician_name", "operators_name")
#: coded-string (VR CS) columns: a value that is not a valid code string (upper-case letters, digits, space,
#: underscore, at most 16 characters per value) is free text in the wrong place and is nulled
CS_COLUMNS = ("modality", "photometric_interpretation", "body_part_examined", "view_position", "laterality",
              "mr_acquisition_type", "burned_in_annotation")
_CS_VALID = r"^[A-Z0-9 _]{0,16}(\\[A-Z0-9 _]{0,16})*$"
_CLASS_UID_COLUMNS = {"sop_class_uid", "transfer_syntax_uid", "media_storage_sop_class_uid"}
#: the Params that switch on a PS3.15 option (the temporal ones are the ``dates`` Param)
OPTION_PARAMS = ("retainPatientCharacteristics", "retainDeviceIdentity", "retainInstitutionIdentity", "retainUIDs",
                 "retainSafePrivate", "cleanDescriptors")


def scrub_paths(text, paths, label):
    """``text`` with every path in ``paths`` and its file name replaced by ``label(path)``."""
    if text is None:
        return None
    out = str(text)
    for p in sorted({str(p) for p in paths if p}, key=len, reverse=True):
        lab = label(p)
        out = out.replace(p, lab)
        name = p.rsplit("/", 1)[-1]
        if name:
            out = re.sub(r"(?<![\w.-])" + re.escape(name) + r"(?![\w-])", lab, out)
    return out


class Deidentify(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """De-identify reader output (PS3.15 Basic Profile on metadata columns) and flag burned-in images.

    The key is never a Param (it is not saved with a pipeline): pass ``key=``
    or set the environment variable named by ``keyEnv`` (default
    ``BIGDL_MEDIMG_DEID_KEY``) where the pipeline runs.

    What happens to the columns present in the DataFrame:

    * UID columns (``*_uid`` except class/syntax UIDs, and ``series_key``):
      remapped to keyed ``2.25.`` UIDs, the same for the same input everywhere;
    * identifier columns (``patient_id``, ``accession_number``, ``study_id``,
      ``other_patient_ids``, ``case``...): keyed pseudonyms; person-name columns:
      the patient's pseudonym or null;
    * date columns (``*_date``, ``*_datetime``): shifted by a per-patient offset
      (``dates="shift"``, keyed on ``patientCol``, else on the study UID) or
      removed (``dates="remove"``); birth dates removed;
    * ``path`` (string or array of paths): replaced by opaque labels
      (``pathMode="hash"``), dropped (``"drop"``) or kept (``"keep"``); file
      names inside ``error`` texts are replaced by the same labels;
    * coded-string columns (``modality``, ``photometric_interpretation``, ...):
      values that are not valid DICOM code strings (free text where a code
      belongs) become null;
    * ``quarantineCol`` (default ``quarantine``): the reason an image may carry
      burned-in text (BurnedInAnnotation YES, secondary capture class), else null.

    Private tags never reach the columns (the readers' metadata is an
    allow-list); :func:`~bigdl_medimg.deid.deidentify_files` writes
    de-identified DICOM files.
    """

    keyEnv = param("keyEnv", "environment variable holding the key", TypeConverters.toString)
    dates = param("dates", "'shift' (Retain Longitudinal Temporal Information, Modified Dates: a per-patient offset), "
                           "'keep' (Full Dates) or 'remove' (the Basic Profile)", TypeConverters.toString)
    maxShiftDays = param("maxShiftDays", "largest date shift in days", TypeConverters.toInt)
    retainPatientCharacteristics = param("retainPatientCharacteristics", "keep the patient characteristics the table's Retain Patient Characteristics column keeps (sex, age, size, weight, ...)", TypeConverters.toBoolean)
    retainDeviceIdentity = param("retainDeviceIdentity", "Retain Device Identity Option: keep device serial numbers, station names and the like", TypeConverters.toBoolean)
    retainInstitutionIdentity = param("retainInstitutionIdentity", "Retain Institution Identity Option: keep institution names and addresses", TypeConverters.toBoolean)
    retainUIDs = param("retainUIDs", "Retain UIDs Option: keep the original UIDs instead of remapping them", TypeConverters.toBoolean)
    retainSafePrivate = param("retainSafePrivate", "Retain Safe Private Option: keep the private attributes of safePrivateTags (files)", TypeConverters.toBoolean)
    cleanDescriptors = param("cleanDescriptors", "Clean Descriptors Option: keep descriptions and comments, cleaned of the patient's identifiers", TypeConverters.toBoolean)
    safePrivateTags = param("safePrivateTags", "private attributes kept under retainSafePrivate: 'CREATOR:ee' (private creator, element byte in hex)", TypeConverters.toListString)
    pathMode = param("pathMode", "'hash', 'drop' or 'keep'", TypeConverters.toString)
    patientCol = param("patientCol", "column identifying the patient for date shifts", TypeConverters.toString)
    quarantineCol = param("quarantineCol", "column receiving the quarantine reason ('' for none)",
                          TypeConverters.toString)

    @keyword_only
    def __init__(self, *, key=None, keyEnv=KEY_ENV, dates="shift", maxShiftDays=365, pathMode="hash",
                 patientCol="patient_id", quarantineCol="quarantine", retainPatientCharacteristics=False,
                 retainDeviceIdentity=False, retainInstitutionIdentity=False, retainUIDs=False,
                 retainSafePrivate=False, cleanDescriptors=False, safePrivateTags=None):
        super().__init__()
        self._setDefault(keyEnv=KEY_ENV, dates="shift", maxShiftDays=365, pathMode="hash", patientCol="patient_id",
                         quarantineCol="quarantine", retainPatientCharacteristics=False, retainDeviceIdentity=False,
                         retainInstitutionIdentity=False, retainUIDs=False, retainSafePrivate=False,
                         cleanDescriptors=False, safePrivateTags=[])
        kwargs = {k: v for k, v in self._input_kwargs.items() if v is not None or k == "key"}
        self._key = kwargs.pop("key", None)
        self._set(**kwargs)

    def __repr__(self) -> str:
        return f"Deidentify(uid={self.uid}, key=<hidden>)"

    def pseudonymizer(self) -> Pseudonymizer:
        """The keyed pseudonymizer (the key from ``key=`` or the environment)."""
        key = self._key if self._key is not None else os.environ.get(self.getOrDefault("keyEnv"))
        if not key:
            raise ConfigError(f"Deidentify needs a key: pass key= or set ${self.getOrDefault('keyEnv')}")
        return Pseudonymizer(key, self.getOrDefault("maxShiftDays"))

    def options(self) -> tuple[str, ...]:
        """The PS3.15 options these Params enable (the dates mode's included)."""
        from .profile import profile_options

        on = tuple(n for n in OPTION_PARAMS if self.getOrDefault(n))
        return profile_options(self.getOrDefault("dates"), on)

    def safe_private(self) -> list[tuple[str, int]]:
        """``safePrivateTags`` as ``(private creator, element byte)`` pairs."""
        out = []
        for item in self.getOrDefault("safePrivateTags"):
            creator, sep, elem = str(item).rpartition(":")
            try:
                out.append((creator, int(elem, 16)))
            except ValueError:
                raise ConfigError(f"Deidentify: safePrivateTags entries are 'CREATOR:ee' (element byte in hex), "
                                  f"got {item!r}") from None
            if not sep or not creator:
                raise ConfigError(f"Deidentify: safePrivateTags entries are 'CREATOR:ee', got {item!r}")
        return out

    def _validate(self) -> None:
        self.safe_private()
        if self.getOrDefault("dates") not in DATE_MODES:
            raise ConfigError(f"Deidentify: dates must be one of {DATE_MODES}, got {self.getOrDefault('dates')!r}")
        if self.getOrDefault("pathMode") not in PATH_MODES:
            raise ConfigError(f"Deidentify: pathMode must be one of {PATH_MODES}, "
                              f"got {self.getOrDefault('pathMode')!r}")

    def _transform(self, df):
        import pandas as pd
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        self._validate()
        pseudo = self.pseudonymizer()
        cols = {f.name: f.dataType for f in df.schema.fields}
        dates_mode = self.getOrDefault("dates")
        options = self.options()
        path_mode = self.getOrDefault("pathMode")
        patient_col = self.getOrDefault("patientCol")
        q_col = self.getOrDefault("quarantineCol")
        out = df
        raw_patient = "__deid_patient"
        if patient_col in cols:  # the real identifier, for date offsets and names, before it is replaced
            out = out.withColumn(raw_patient, F.col(patient_col).cast("string"))

        def udf_str(fn):
            return F.pandas_udf(lambda s: s.map(lambda v: None if v is None else fn(v)), T.StringType())

        if q_col:
            reason = F.lit(None).cast("string")
            if "sop_class_uid" in cols:
                for uid, name in SECONDARY_CAPTURE_CLASSES.items():
                    reason = F.when(F.trim(F.col("sop_class_uid")) == uid,
                                    F.lit(f"secondary capture image ({name})")).otherwise(reason)
            burned = F.upper(F.trim(F.col("burned_in_annotation"))) if "burned_in_annotation" in cols else F.lit(None)
            if "modality" in cols:  # modalities that usually burn text in: quarantined unless it says NO
                for mod, what in BURNED_IN_MODALITIES.items():
                    said_no = F.coalesce(burned == "NO", F.lit(False))
                    reason = F.when((F.upper(F.trim(F.col("modality"))) == mod) & ~said_no,
                                    F.concat(F.lit(f"modality {mod} ({what}) often carries burned-in text and "
                                                   "BurnedInAnnotation is "), F.coalesce(burned, F.lit("missing")),
                                             F.lit(", not NO"))).otherwise(reason)
            if "burned_in_annotation" in cols:
                reason = F.when(burned == "YES", F.lit("BurnedInAnnotation is YES")).otherwise(reason)
            out = out.withColumn(q_col, reason)

        # date shifts need the patient before identifiers are replaced
        date_cols = [c for c, t in cols.items() if isinstance(t, T.StringType) and re.search(r"(^|_)date(time)?$", c)]
        if date_cols:
            key_col = raw_patient if patient_col in cols else ("study_instance_uid" if "study_instance_uid" in cols
                                                               else None)

            @F.pandas_udf(T.StringType())
            def shift(values: pd.Series, who: pd.Series) -> pd.Series:
                from .profile import shift_date

                return pd.Series([None if v is None else shift_date(v, pseudo.shift_days(w))
                                  for v, w in zip(values, who)], dtype=object)

            who = F.col(key_col).cast("string") if key_col else F.lit("")
            for c in date_cols:
                if dates_mode == "keep" and "birth" not in c:
                    continue  # Retain Longitudinal Temporal Information with Full Dates
                if dates_mode == "remove" or "birth" in c:
                    out = out.withColumn(c, F.lit(None).cast("string"))
                else:
                    out = out.withColumn(c, shift(F.col(c), F.coalesce(who, F.lit(""))))

        # error texts: file names -> labels (before the paths themselves change)
        if "error" in cols and "path" in cols and path_mode != "keep":
            is_array = isinstance(cols["path"], T.ArrayType)

            @F.pandas_udf(T.StringType())
            def scrub(errors: pd.Series, paths: pd.Series) -> pd.Series:
                return pd.Series([None if e is None else scrub_paths(
                    e, (list(p) if p is not None else []) if is_array else [p], pseudo.path_label)
                    for e, p in zip(errors, paths)], dtype=object)

            out = out.withColumn("error", scrub(F.col("error"), F.col("path")))

        for c, t in cols.items():
            if not isinstance(t, T.StringType):
                continue
            if c == "series_key":
                out = out.withColumn(c, udf_str(lambda v: _remap_series_key(pseudo, v))(F.col(c)))
            elif c.endswith("_uid") and c not in _CLASS_UID_COLUMNS:
                if "retainUIDs" not in options:
                    out = out.withColumn(c, udf_str(pseudo.uid)(F.col(c)))
            elif c in ID_COLUMNS:
                prefix = ID_COLUMNS[c]
                out = out.withColumn(c, udf_str(lambda v, _p=prefix: pseudo.pseudonym(v, _p))(F.col(c)))
            elif c in CS_COLUMNS:
                out = out.withColumn(c, F.when(F.col(c).rlike(_CS_VALID), F.col(c)))
            elif c in NAME_COLUMNS:
                if c == "patient_name" and patient_col in cols:
                    out = out.withColumn(c, udf_str(lambda v: pseudo.pseudonym(v, "PAT"))(F.col(raw_patient)))
                else:
                    out = out.withColumn(c, F.lit(None).cast("string"))
            elif c not in date_cols:
                row = table_row(c)
                # any other column naming an attribute of Table E.1-1: kept only when an option keeps it
                if row is not None and action_for(row, options) != "K":
                    out = out.withColumn(c, F.lit(None).cast("string"))
        if "path" in cols:
            if path_mode == "drop":
                out = out.drop("path")
            elif path_mode == "hash":
                if isinstance(cols["path"], T.ArrayType):
                    @F.pandas_udf(T.ArrayType(T.StringType()))
                    def labels(paths: pd.Series) -> pd.Series:
                        return pd.Series([None if p is None else [pseudo.path_label(x) for x in p] for p in paths],
                                         dtype=object)

                    out = out.withColumn("path", labels(F.col("path")))
                else:
                    out = out.withColumn("path", udf_str(pseudo.path_label)(F.col("path")))
        return out.drop(raw_patient) if patient_col in cols else out

    def setKeyEnv(self, value: str) -> Self:
        """Set :py:attr:`keyEnv`: environment variable holding the key."""
        return self._set(keyEnv=value)

    def getKeyEnv(self) -> str:
        """The value of :py:attr:`keyEnv` (set or default): environment variable holding the key."""
        return self.getOrDefault(self.keyEnv)

    def setDates(self, value: str) -> Self:
        """Set :py:attr:`dates`: 'shift' (Modified Dates: a per-patient offset), 'keep' (Full Dates) or 'remove'."""
        return self._set(dates=value)

    def getDates(self) -> str:
        """The value of :py:attr:`dates` (set or default): 'shift' (Modified Dates: a per-patient offset), 'keep'
        (Full Dates) or 'remove'."""
        return self.getOrDefault(self.dates)

    def setMaxShiftDays(self, value: int) -> Self:
        """Set :py:attr:`maxShiftDays`: largest date shift in days."""
        return self._set(maxShiftDays=value)

    def getMaxShiftDays(self) -> int:
        """The value of :py:attr:`maxShiftDays` (set or default): largest date shift in days."""
        return self.getOrDefault(self.maxShiftDays)

    def setPathMode(self, value: str) -> Self:
        """Set :py:attr:`pathMode`: 'hash', 'drop' or 'keep'."""
        return self._set(pathMode=value)

    def getPathMode(self) -> str:
        """The value of :py:attr:`pathMode` (set or default): 'hash', 'drop' or 'keep'."""
        return self.getOrDefault(self.pathMode)

    def setPatientCol(self, value: str) -> Self:
        """Set :py:attr:`patientCol`: column identifying the patient for date shifts."""
        return self._set(patientCol=value)

    def getPatientCol(self) -> str:
        """The value of :py:attr:`patientCol` (set or default): column identifying the patient for date shifts."""
        return self.getOrDefault(self.patientCol)

    def setQuarantineCol(self, value: str) -> Self:
        """Set :py:attr:`quarantineCol`: column receiving the quarantine reason ('' for none)."""
        return self._set(quarantineCol=value)

    def getQuarantineCol(self) -> str:
        """The value of :py:attr:`quarantineCol` (set or default): column receiving the quarantine reason ('' for none).
        """
        return self.getOrDefault(self.quarantineCol)

    def setRetainPatientCharacteristics(self, value: bool) -> Self:
        """Set :py:attr:`retainPatientCharacteristics`: keep the patient characteristics the table's Retain Patient Characteristics column keeps (sex, age, size, weight, ...)."""
        return self._set(retainPatientCharacteristics=value)

    def getRetainPatientCharacteristics(self) -> bool:
        """The value of :py:attr:`retainPatientCharacteristics` (set or default): keep the patient characteristics the table's Retain Patient Characteristics column keeps (sex, age, size, weight, ...)."""
        return self.getOrDefault(self.retainPatientCharacteristics)

    def setRetainDeviceIdentity(self, value: bool) -> Self:
        """Set :py:attr:`retainDeviceIdentity`: Retain Device Identity Option: keep device serial numbers, station names and the like."""
        return self._set(retainDeviceIdentity=value)

    def getRetainDeviceIdentity(self) -> bool:
        """The value of :py:attr:`retainDeviceIdentity` (set or default): Retain Device Identity Option: keep device serial numbers, station names and the like."""
        return self.getOrDefault(self.retainDeviceIdentity)

    def setRetainInstitutionIdentity(self, value: bool) -> Self:
        """Set :py:attr:`retainInstitutionIdentity`: Retain Institution Identity Option: keep institution names and addresses."""
        return self._set(retainInstitutionIdentity=value)

    def getRetainInstitutionIdentity(self) -> bool:
        """The value of :py:attr:`retainInstitutionIdentity` (set or default): Retain Institution Identity Option: keep institution names and addresses."""
        return self.getOrDefault(self.retainInstitutionIdentity)

    def setRetainUIDs(self, value: bool) -> Self:
        """Set :py:attr:`retainUIDs`: Retain UIDs Option: keep the original UIDs instead of remapping them."""
        return self._set(retainUIDs=value)

    def getRetainUIDs(self) -> bool:
        """The value of :py:attr:`retainUIDs` (set or default): Retain UIDs Option: keep the original UIDs instead of remapping them."""
        return self.getOrDefault(self.retainUIDs)

    def setRetainSafePrivate(self, value: bool) -> Self:
        """Set :py:attr:`retainSafePrivate`: Retain Safe Private Option: keep the private attributes of safePrivateTags (files)."""
        return self._set(retainSafePrivate=value)

    def getRetainSafePrivate(self) -> bool:
        """The value of :py:attr:`retainSafePrivate` (set or default): Retain Safe Private Option: keep the private attributes of safePrivateTags (files)."""
        return self.getOrDefault(self.retainSafePrivate)

    def setCleanDescriptors(self, value: bool) -> Self:
        """Set :py:attr:`cleanDescriptors`: Clean Descriptors Option: keep descriptions and comments, cleaned of the patient's identifiers."""
        return self._set(cleanDescriptors=value)

    def getCleanDescriptors(self) -> bool:
        """The value of :py:attr:`cleanDescriptors` (set or default): Clean Descriptors Option: keep descriptions and comments, cleaned of the patient's identifiers."""
        return self.getOrDefault(self.cleanDescriptors)

    def setSafePrivateTags(self, value: list[str]) -> Self:
        """Set :py:attr:`safePrivateTags`: private attributes kept under retainSafePrivate: 'CREATOR:ee'."""
        return self._set(safePrivateTags=value)

    def getSafePrivateTags(self) -> list[str]:
        """The value of :py:attr:`safePrivateTags` (set or default): private attributes kept under
        retainSafePrivate: 'CREATOR:ee' (private creator, element byte in hex)."""
        return self.getOrDefault(self.safePrivateTags)


def table_row(column: str) -> dict | None:
    """The Table E.1-1 row of the attribute a reader column holds (``patient_sex`` -> PatientSex), or None."""
    from pydicom.datadict import tag_for_keyword

    from .table import lookup

    kw = _keywords().get(column.replace("_", "").lower())
    tag = tag_for_keyword(kw) if kw else None
    return lookup(tag) if tag is not None else None


@lru_cache(maxsize=1)
def _keywords() -> dict:
    from pydicom.datadict import keyword_dict

    return {k.lower(): k for k in keyword_dict}


def _remap_series_key(pseudo: Pseudonymizer, key: str) -> str:
    uid, sep, rest = str(key).partition("#")
    return (pseudo.uid(uid) or "") + sep + rest

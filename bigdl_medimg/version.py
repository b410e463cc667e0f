"""Single source of the package version, and of the BigDL wheels pip cannot install for us."""
__version__ = "0.1.0"

#: BigDL's wheels, installed with ``pip install --no-deps`` (they pin pyspark 3.1.3; we run 3.5).
#: setup.cfg's ``[bigdl_medimg] no_deps_requires`` lists the same pins (a test checks they agree).
BIGDL_REQUIREMENTS = {"bigdl-dllib-spark3": "2.4.0", "bigdl-core": "2.4.0.dev0"}


def bigdl_install_command() -> str:
    """The one command that completes ``pip install bigdl-medimg``: BigDL without its pyspark 3.1.3 pin."""
    return "pip install --no-deps " + " ".join(f"{k}=={v}" for k, v in BIGDL_REQUIREMENTS.items())

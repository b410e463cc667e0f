"""Estimators and models (Spark ML) over BigDL networks."""
from __future__ import annotations

"""Routing that understands the task text: a local bilingual classifier (kinds and needs), trained from the
labelled set in routing/data, and its evidence for `/why`."""
from .classifier import KINDS, NEEDS, Classifier, Verdict, load_classifier

__all__ = ["KINDS", "NEEDS", "Classifier", "Verdict", "load_classifier"]

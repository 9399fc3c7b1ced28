"""The embedded synthetic study area (see study_area.py)."""

from catalog.synthetic.study_area import StudyArea, StudyAreaSpec, generate_study_area

__all__ = ["StudyArea", "StudyAreaSpec", "generate_study_area"]

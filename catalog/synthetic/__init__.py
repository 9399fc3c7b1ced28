"""The embedded synthetic study area (see study_area.py) and the training world (`world`).

Not on the runtime path: a run on real data never imports the generator. `StudyAreaSpec` and
`StudyArea` (what a config says about the area, `area_spec`) are light; `generate_study_area`
loads the renderer when it is first asked for (the CLI's `synth`, a run that must make the
embedded area, training and tests).
"""

from catalog.synthetic.area_spec import StudyArea, StudyAreaSpec

__all__ = ["StudyArea", "StudyAreaSpec", "generate_study_area"]


def __getattr__(name: str):
    if name == "generate_study_area":
        from catalog.synthetic.study_area import generate_study_area

        return generate_study_area
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The compiled part of ccforge: the fast jusText's paragraph walk (Cython over lxml's C API), its
page text statistics, its classification passes and the text its stop list is chosen from.
Everything else is declared in pyproject.toml."""

import lxml
from Cython.Build import cythonize
from setuptools import Extension, setup

walk = Extension("curation.justext_fast._walk", ["curation/justext_fast/_walk.pyx"], include_dirs=lxml.get_include())
text = Extension("curation.justext_fast._text", ["curation/justext_fast/_text.pyx"])
classify = Extension("curation.justext_fast.classify", ["curation/justext_fast/classify.pyx"])
lid_text = Extension("curation.justext_fast._lid_text", ["curation/justext_fast/_lid_text.pyx"])
setup(ext_modules=cythonize([walk, text, classify, lid_text], language_level=3))

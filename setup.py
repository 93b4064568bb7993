"""The compiled part of ccforge: the fast jusText's paragraph walk (Cython over lxml's C API).
Everything else is declared in pyproject.toml."""

import lxml
from Cython.Build import cythonize
from setuptools import Extension, setup

walk = Extension("curation.justext_fast._walk", ["curation/justext_fast/_walk.pyx"], include_dirs=lxml.get_include())
setup(ext_modules=cythonize([walk], language_level=3))

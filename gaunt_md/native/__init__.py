"""Compiled C++ code, built on first use: see :mod:`gaunt_md.native.build`."""

"""Tests of registering data files: decide(), the API, recovery and ``ecpds put``."""

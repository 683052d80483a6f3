"""course_lib: the companion package of the course on conditional synthetic EHR generation."""

__version__ = "0.1.0"

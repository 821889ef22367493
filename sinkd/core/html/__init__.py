"""HTML inspection for the filter core: nesting depth, and images, multimedia, active script
and hidden text found and stripped.

Owns reading HTML bodies only; it judges nothing (the ``mime`` filter turns what it finds into
findings) and must not import adapters.
"""

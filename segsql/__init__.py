"""segsql: a SQL-first, declarative compiler for customer segments.

Pipeline (one module per stage): load -> graph -> render -> build -> emit -> run.
"""

__version__ = "0.1.0"

"""Small schemas the protocol case tests decode against (no model, no server)."""

from __future__ import annotations

from predictor.protocol.schema import Column, Schema

#: numeric, read as a float64 matrix: a double, a long and a float column
NUMERIC = Schema((Column("a", "double"), Column("b", "long"), Column("c", "float")))
#: two doubles and an entity key (the feature store fills what a row leaves out), at most 3 rows
ENTITY = Schema((Column("a", "double"), Column("b", "double")), entity_key="id", max_instances=3)
#: one column of every type, rows as Python objects, the last column optional
MIXED = Schema(
    (
        Column("x", "double"),
        Column("n", "long"),
        Column("i", "integer"),
        Column("flag", "boolean"),
        Column("s", "string"),
        Column("t", "datetime"),
        Column("blob", "binary"),
        Column("opt", "double", required=False),
    ),
    matrix=False,
)
NUMERIC_COLUMNS = "3 columns in this order: a (double), b (long), c (float)"

"""The intermediate representation: NIR graphs + slt.* metadata (docs/ir.md).
frontend: torch -> NIR; interpreter: the reference executor of NIR graphs; graph: helpers; meta: the keys."""

"""`python -m harness.schedules`: the README's schedule table, from the registry."""
from harness.schedules.registry import readme_table

print(readme_table())

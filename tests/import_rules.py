"""An import-linter contract type that allow-lists what a module may import directly (`lint-imports`
loads it from the repo root; see `[tool.importlinter]` in pyproject.toml)."""

from __future__ import annotations

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class AllowListContract(Contract):
    """Each source module imports only the allowed modules (or modules inside them), directly."""

    type_name = "allowlist"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    allowed_modules = fields.ListField(subfield=fields.ModuleField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = [module.name for module in self.allowed_modules]
        refused: list[str] = []
        for source in self.source_modules:
            for imported in sorted(graph.find_modules_directly_imported_by(source.name)):
                if not any(imported == a or imported.startswith(f"{a}.") for a in allowed):
                    refused.append(f"{source.name} -> {imported}")
        return ContractCheck(kept=not refused, metadata={"refused": refused})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["refused"]:
            output.print_error(f"{line} (not on the allow-list)")
            output.new_line()

"""``SyncTable``: a DataTable updated in place from keyed rows (no clear per poll).

Adding, removing and changing only the rows and cells that differ keeps a 2,000-trial table
fluid at one poll a second; a full ``clear()`` would re-layout every row each time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui.format import sort_key

Styler = Callable[[str, str], Text | str]


class SyncTable(DataTable[Text | str]):
    """A row-cursor DataTable whose contents follow ``sync(rows)``; sortable by column."""

    def __init__(self, columns: Sequence[str], styler: Styler | None = None, **kw: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)  # type: ignore[arg-type]
        self._columns = tuple(columns)
        self._styler = styler
        self._shown: dict[str, tuple[str, ...]] = {}
        self.sort_column: str | None = None
        self.sort_reverse = False

    def on_mount(self) -> None:
        self.set_columns(self._columns)

    def set_columns(self, columns: Sequence[str]) -> None:
        """Replace the columns (and drop every row): used when another experiment opens."""
        self.clear(columns=True)
        self._shown.clear()
        self._columns = tuple(columns)
        for name in self._columns:
            self.add_column(name, key=name)

    def _cell(self, column: str, value: str) -> Text | str:
        return self._styler(column, value) if self._styler else value

    def sync(self, rows: Mapping[str, tuple[str, ...]]) -> bool:
        """Make the table show exactly ``rows`` (key -> cells); returns whether anything changed."""
        changed = False
        for key in [k for k in self._shown if k not in rows]:
            self.remove_row(key)
            del self._shown[key]
            changed = True
        for key, cells in rows.items():
            old = self._shown.get(key)
            if old is None:
                self.add_row(
                    *(self._cell(c, v) for c, v in zip(self._columns, cells, strict=True)), key=key
                )
                changed = True
            elif old != cells:
                for col, a, b in zip(self._columns, old, cells, strict=True):
                    if a != b:
                        self.update_cell(key, col, self._cell(col, b))
                changed = True
            self._shown[key] = cells
        if changed and self.sort_column:
            self._resort()
        return changed

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; asking for the same column again flips the order."""
        self.sort_reverse = not self.sort_reverse if self.sort_column == column else False
        self.sort_column = column
        self._resort()

    def _resort(self) -> None:
        if self.sort_column in self._columns:
            self.sort(self.sort_column, key=sort_key, reverse=self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return None if row_key.value is None else str(row_key.value)

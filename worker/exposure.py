"""Whether the kernel can read a location file, asked before any work is queued for it.

The worker owns the answer because the kernel is what reads the file; the API asks at upload
and again at `generate_inputs/`, so a file the lookup or oasislmf cannot use is refused with a
reason instead of failing an analysis later with a traceback from deep inside oasislmf.

Two layers:

- ods_tools' OED check, run exactly as the kernel loads the file (`worker.kernel`'s reading and
  options): unknown codes (an `OccupancyCode` of 9999), values out of range (a negative TIV),
  columns a class of business requires.
- What that check lets through and oasislmf then trips on. oasislmf reads, for every coverage
  type its keys hold, that coverage's TIV column (`gul_inputs.get_gul_input_items`, profile
  term `tiv`), with no default: a file without `ContentsTIV` for a model whose lookup keys
  contents ends in `KeyError: 'ContentsTIV'`. OED itself makes every TIV column optional. TIVs
  that are text load as missing, and a file whose TIVs are all zero leaves no item to model.

Where the model is not known yet (at upload) the file needs at least one of the main TIV
columns; at `generate_inputs/` it needs the column of every coverage type the model's lookup
keys, taken from the model settings' `lookup_settings.supported_coverage_types` (oasislmf's
model settings schema lets `lookup_settings` carry it; a model that does not declare it is
checked as at upload).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Final

# OED coverage types of property exposure: buildings, other, contents, business interruption.
MAIN_COVERAGE_TYPES: Final = (1, 2, 3, 4)
# Rows named in a refusal: enough to find them, not a dump of the file.
SHOWN_ROWS: Final = 3
# ods_tools' messages can hold a whole table; a refusal quotes this much of one.
MESSAGE_CHARACTERS: Final = 600


class ExposureError(ValueError):
    """The column (or what else) the kernel cannot use, and why, in words for the user."""

    def __init__(self, column: str, reason: str) -> None:
        self.column, self.reason = column, reason
        super().__init__(f"{column}: {reason}")


def tiv_columns() -> dict[int, str]:
    """oasislmf's map of coverage type to the TIV column it reads, from its exposure profile."""
    from oasislmf.utils.defaults import (  # type: ignore[import-untyped]
        get_default_exposure_profile,
    )
    from oasislmf.utils.fm import SUPPORTED_FM_LEVELS  # type: ignore[import-untyped]
    from oasislmf.utils.profiles import (  # type: ignore[import-untyped]
        get_grouped_fm_profile_by_level_and_term_group,
    )

    profile = get_grouped_fm_profile_by_level_and_term_group(
        exposure_profile=get_default_exposure_profile()
    )
    site = profile[SUPPORTED_FM_LEVELS["site coverage"]["id"]]
    return {
        int(terms["tiv"]["CoverageTypeID"]): str(terms["tiv"]["ProfileElementName"])
        for terms in site.values()
    }


def keyed_coverage_types(model_settings: Mapping[str, Any] | None) -> tuple[int, ...] | None:
    """The coverage types the model's lookup keys, when its settings declare them."""
    lookup = (model_settings or {}).get("lookup_settings")
    declared = lookup.get("supported_coverage_types") if isinstance(lookup, Mapping) else None
    if not isinstance(declared, list) or not declared:
        return None
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in declared):
        return None
    return tuple(declared)


def check_location_file(location_csv: Path, coverage_types: Collection[int] | None) -> int:
    """Check the file as the kernel will read it; return its row count or raise ExposureError.

    `coverage_types`: those the model's lookup keys, or None where the model is not known.
    """
    from ods_tools.oed import OedExposure  # type: ignore[import-untyped]
    from ods_tools.oed.common import OdsException  # type: ignore[import-untyped]

    from worker.kernel import oed_options, read_oed_csv

    frame = read_oed_csv(location_csv)
    columns = tiv_columns()
    _check_tiv_columns(frame, columns, coverage_types)
    try:
        OedExposure(location=frame, **oed_options())
    except OdsException as exc:
        raise ExposureError("OED", f"ods_tools' OED check refused it: {_short(exc)}") from None
    return len(frame)


def _check_tiv_columns(
    frame: Any, columns: Mapping[int, str], coverage_types: Collection[int] | None
) -> None:
    import pandas as pd  # type: ignore[import-untyped]

    if coverage_types is None:
        wanted = [columns[c] for c in MAIN_COVERAGE_TYPES]
        present = [name for name in wanted if name in frame.columns]
        if not present:
            raise ExposureError(
                "TIV",
                f"the file has none of the TIV columns {', '.join(wanted)}; oasislmf takes each"
                " coverage's insured value from them",
            )
    else:
        unknown = sorted(c for c in coverage_types if c not in columns)
        if unknown:
            raise ExposureError(
                "supported_coverage_types", f"oasislmf knows no coverage type {unknown[0]}"
            )
        present = sorted({columns[c] for c in coverage_types})
        for name in present:
            if name not in frame.columns:
                raise ExposureError(
                    name,
                    f"the column is missing; the model's lookup keys coverage type"
                    f" {_coverage_of(columns, name, coverage_types)} and oasislmf reads that"
                    f" coverage's insured value from {name}",
                )
    total = 0.0
    for name in present:
        text = frame[name]
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna() & text.notna()
        if bad.any():
            raise ExposureError(
                name, f"not a number: {_rows(text[bad])} (oasislmf would read them as missing)"
            )
        total += float(values.fillna(0).abs().sum())
    if total == 0:
        raise ExposureError(
            ", ".join(present),
            "every insured value is 0 or empty, so oasislmf has no item to model",
        )


def _coverage_of(columns: Mapping[int, str], name: str, coverage_types: Collection[int]) -> int:
    return min(c for c in coverage_types if columns[c] == name)


def _rows(values: Any) -> str:
    """`'abc' in row 3, ...` with rows numbered as in the file (the header is line 1)."""
    shown = [f"{value!r} in row {index + 2}" for index, value in values.head(SHOWN_ROWS).items()]
    more = len(values) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= MESSAGE_CHARACTERS else text[: MESSAGE_CHARACTERS - 3] + "..."

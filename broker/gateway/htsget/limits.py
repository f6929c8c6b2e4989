"""Bounds on everything the htsget core reads, so a hostile or broken file costs bounded work."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds; the defaults fit whole-genome BAMs and large cohort VCFs with room to spare."""

    max_index_bytes: int = 256 * MIB
    """Largest index accepted, compressed or not, and largest inflated TBI/CSI."""
    max_references: int = 1 << 24
    """Most reference sequences in a BAM header or an index (some assemblies have millions of contigs)."""
    max_name_bytes: int = 64 * 1024
    """Longest reference name, in bytes."""
    max_header_bytes: int = 128 * MIB
    """Largest inflated BAM or VCF header."""
    max_regions: int = 1024
    """Most regions in one request."""
    max_aux_bytes: int = 16 * MIB
    """Largest CSI auxiliary data (the tabix name list lives there for VCF)."""
    max_inline_bytes: int = 16 * MIB
    """Most re-compressed (inline ``data:``) bytes one answer may carry; each scattered region costs up to 128 KiB."""
    max_scan_bytes: int = 16 * MIB
    """Inflated bytes the record scans of one request may read in all to tighten chunks; 0 turns them off."""


DEFAULT_LIMITS = Limits()

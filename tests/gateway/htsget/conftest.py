"""Fixtures: synthetic BAM and VCF files (normal and tiny BGZF blocks) with all their indexes."""

from __future__ import annotations

import pytest

from tests.gateway.htsget.support import Sample, Tools, make_bam, make_vcf, tools


@pytest.fixture(scope="session")
def hts_tools() -> Tools:
    return tools()


@pytest.fixture(scope="session")
def bam(hts_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_bam(hts_tools, tmp_path_factory.mktemp("bam"), small_blocks=False)


@pytest.fixture(scope="session")
def bam_small_blocks(hts_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_bam(hts_tools, tmp_path_factory.mktemp("bam-small"), small_blocks=True)


@pytest.fixture(scope="session")
def vcf(hts_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_vcf(hts_tools, tmp_path_factory.mktemp("vcf"), small_blocks=False)


@pytest.fixture(scope="session")
def vcf_small_blocks(hts_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_vcf(hts_tools, tmp_path_factory.mktemp("vcf-small"), small_blocks=True)


@pytest.fixture(scope="session", params=["bam-bai", "bam-csi", "small-bai", "small-csi"])
def bam_case(request: pytest.FixtureRequest) -> tuple[Sample, str]:
    """Every BAM layout with every index kind."""
    layout, index = request.param.split("-")
    sample = request.getfixturevalue("bam" if layout == "bam" else "bam_small_blocks")
    return sample, index


@pytest.fixture(scope="session", params=["vcf-tbi", "vcf-csi", "small-tbi", "small-csi"])
def vcf_case(request: pytest.FixtureRequest) -> tuple[Sample, str]:
    """Every VCF layout with every index kind."""
    layout, index = request.param.split("-")
    sample = request.getfixturevalue("vcf" if layout == "vcf" else "vcf_small_blocks")
    return sample, index

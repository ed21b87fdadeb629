"""MLflow's GraphQL schema (3.x: ``mlflow/server/graphql``, the names its graphene schema
publishes) on graphql-core, and the limits a query is held to before it runs.

Used by :mod:`strata.tracking.mlflow_api.graphql_api`, which serves ``/graphql``.
"""

from __future__ import annotations

import os
import re
from collections import deque
from functools import cache
from typing import TYPE_CHECKING, Any

from strata.core.errors import Unavailable

if TYPE_CHECKING:
    from graphql import DocumentNode, GraphQLSchema

MAX_DEPTH = 10
MAX_SELECTIONS = 1000
#: The longest query text accepted (MLflow's UI sends a few KB).
MAX_QUERY_BYTES = 64 * 1024
#: The parser gives up after this many tokens.
MAX_TOKENS = 10_000
_INT64 = (-(2**63), 2**63 - 1)

SDL = """
directive @component(name: String!) on QUERY | MUTATION
scalar LongString
enum MlflowRunStatus { RUNNING SCHEDULED FINISHED FAILED KILLED }
enum MlflowViewType { ACTIVE_ONLY DELETED_ONLY ALL }
enum MlflowModelVersionStatus { PENDING_REGISTRATION FAILED_REGISTRATION READY }
enum MlflowDeploymentJobConnectionState {
  DEPLOYMENT_JOB_CONNECTION_STATE_UNSPECIFIED NOT_SET_UP CONNECTED NOT_FOUND
  REQUIRED_PARAMETERS_CHANGED
}
enum MlflowModelVersionDeploymentJobStateDeploymentJobRunState {
  DEPLOYMENT_JOB_RUN_STATE_UNSPECIFIED NO_VALID_DEPLOYMENT_JOB_FOUND RUNNING SUCCEEDED FAILED
  PENDING APPROVAL
}
type ErrorDetail { field: String message: String }
type ApiError {
  code: String message: String helpUrl: String traceId: String errorDetails: [ErrorDetail]
}
type KeyValue { key: String value: String }
type MlflowExperimentTag { key: String value: String }
type MlflowExperiment {
  experimentId: String name: String artifactLocation: String lifecycleStage: String
  lastUpdateTime: LongString creationTime: LongString tags: [MlflowExperimentTag!]
  effectiveTraceArchivalRetention: String workspace: String
}
type MlflowGetExperimentResponse { experiment: MlflowExperiment apiError: ApiError }
type MlflowMetric {
  key: String value: Float timestamp: LongString step: LongString datasetName: String
  datasetDigest: String modelId: String runId: String
}
type MlflowParam { key: String value: String }
type MlflowRunTag { key: String value: String }
type MlflowRunData { metrics: [MlflowMetric!] params: [MlflowParam!] tags: [MlflowRunTag!] }
type MlflowRunInfo {
  runId: String runUuid: String runName: String experimentId: String userId: String
  status: MlflowRunStatus startTime: LongString endTime: LongString artifactUri: String
  lifecycleStage: String
}
type MlflowInputTag { key: String value: String }
type MlflowDataset {
  name: String digest: String sourceType: String source: String schema: String profile: String
}
type MlflowDatasetInput { tags: [MlflowInputTag!] dataset: MlflowDataset }
type MlflowModelInput { modelId: String }
type MlflowRunInputs { datasetInputs: [MlflowDatasetInput!] modelInputs: [MlflowModelInput!] }
type MlflowModelOutput { modelId: String step: LongString }
type MlflowRunOutputs { modelOutputs: [MlflowModelOutput!] }
type MlflowModelVersionTag { key: String value: String }
type MlflowModelParam { name: String value: String }
type MlflowModelMetric {
  key: String value: Float timestamp: LongString step: LongString datasetName: String
  datasetDigest: String modelId: String runId: String
}
type MlflowModelVersionDeploymentJobState {
  jobId: String runId: String jobState: MlflowDeploymentJobConnectionState
  runState: MlflowModelVersionDeploymentJobStateDeploymentJobRunState currentTaskName: String
}
type MlflowModelVersion {
  name: String version: String creationTimestamp: LongString lastUpdatedTimestamp: LongString
  userId: String currentStage: String description: String source: String runId: String
  status: MlflowModelVersionStatus statusMessage: String tags: [MlflowModelVersionTag!]
  runLink: String aliases: [String] modelId: String modelParams: [MlflowModelParam!]
  modelMetrics: [MlflowModelMetric!] deploymentJobState: MlflowModelVersionDeploymentJobState
}
type MlflowRunExtension {
  info: MlflowRunInfo data: MlflowRunData inputs: MlflowRunInputs outputs: MlflowRunOutputs
  experiment: MlflowExperiment modelVersions: [MlflowModelVersion!]
}
type MlflowSearchRunsResponse {
  runs: [MlflowRunExtension!] nextPageToken: String apiError: ApiError
}
type MlflowGetRunResponse { run: MlflowRunExtension apiError: ApiError }
type MlflowMetricWithRunId {
  key: String value: Float timestamp: LongString step: LongString runId: String
}
type MlflowGetMetricHistoryBulkIntervalResponse {
  metrics: [MlflowMetricWithRunId!] apiError: ApiError
}
type MlflowFileInfo { path: String isDir: Boolean fileSize: LongString }
type MlflowListArtifactsResponse {
  rootUri: String files: [MlflowFileInfo!] nextPageToken: String apiError: ApiError
}
type MlflowDatasetSummary {
  experimentId: String name: String digest: String context: String
}
type MlflowSearchDatasetsResponse {
  datasetSummaries: [MlflowDatasetSummary!] apiError: ApiError
}
type MlflowSearchModelVersionsResponse {
  modelVersions: [MlflowModelVersion!] nextPageToken: String apiError: ApiError
}
input MlflowGetExperimentInput { experimentId: String }
input MlflowGetRunInput { runId: String runUuid: String }
input MlflowSearchRunsInput {
  experimentIds: [String] filter: String runViewType: MlflowViewType maxResults: Int
  orderBy: [String] pageToken: String
}
input MlflowListArtifactsInput {
  runId: String runUuid: String path: String pageToken: String
}
input MlflowGetMetricHistoryBulkIntervalInput {
  runIds: [String] metricKey: String startStep: Int endStep: Int maxResults: Int
}
input MlflowSearchDatasetsInput { experimentIds: [String] }
input MlflowSearchModelVersionsInput {
  filter: String maxResults: LongString orderBy: [String] pageToken: String
}
type Test { output: String }
type TestMutation { output: String }
type Query {
  mlflowGetExperiment(input: MlflowGetExperimentInput): MlflowGetExperimentResponse
  mlflowGetMetricHistoryBulkInterval(
    input: MlflowGetMetricHistoryBulkIntervalInput
  ): MlflowGetMetricHistoryBulkIntervalResponse
  mlflowGetRun(input: MlflowGetRunInput): MlflowGetRunResponse
  mlflowListArtifacts(input: MlflowListArtifactsInput): MlflowListArtifactsResponse
  mlflowSearchModelVersions(
    input: MlflowSearchModelVersionsInput
  ): MlflowSearchModelVersionsResponse
  test(inputString: String): Test
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse
}
type Mutation {
  mlflowSearchDatasets(input: MlflowSearchDatasetsInput): MlflowSearchDatasetsResponse
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse
  testMutation(inputString: String): TestMutation
}
"""


@cache
def schema() -> GraphQLSchema:
    try:
        from graphql import GraphQLScalarType, build_schema
    except ImportError:  # pragma: no cover - graphql-core is installed with the server
        raise Unavailable(
            "/graphql needs the graphql-core package: pip install graphql-core"
        ) from None
    built = build_schema(SDL)
    long = built.type_map["LongString"]
    assert isinstance(long, GraphQLScalarType)
    long.serialize = str  # type: ignore[method-assign,assignment]
    long.parse_value = _long  # type: ignore[method-assign]
    return built


def _long(value: Any) -> int:
    """A ``LongString`` input: an integer (or its digits) within 64 bits. Otherwise a
    ValueError, which graphql-core words with the type and the value sent (an error here
    rather than an overflow in a handler)."""
    out: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,20}\s*", value):
        out = int(value)
    if out is None or not _INT64[0] <= out <= _INT64[1]:
        raise ValueError("expected a whole number within 64 bits")
    return out


def _limit(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def check_query(document: DocumentNode) -> str | None:
    """MLflow's query safety check (``graphql_no_batching``): the refusal's message, or None."""
    from graphql import (
        FieldNode,
        FragmentDefinitionNode,
        FragmentSpreadNode,
        InlineFragmentNode,
        OperationDefinitionNode,
        SelectionSetNode,
    )

    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    # Every field written in the document, fragments included (used or not: validation,
    # quadratic in the worst case, reads them all), counted up to the limit only.
    written = 0
    nodes: deque[Any] = deque(document.definitions)
    while nodes:
        node = nodes.popleft()
        written += isinstance(node, FieldNode)
        if written > MAX_SELECTIONS:
            return f"Query exceeds maximum total selections of {MAX_SELECTIONS}"
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            nodes.extend(selection_set.selections)

    def fields_of(selection_set: SelectionSetNode) -> tuple[list[FieldNode], int]:
        out: list[FieldNode] = []
        aliases = 0
        todo: deque[Any] = deque(selection_set.selections)
        seen: set[str] = set()
        while todo:
            sel = todo.popleft()
            if isinstance(sel, FieldNode):
                out.append(sel)
                aliases += sel.alias is not None
            elif isinstance(sel, InlineFragmentNode):
                todo.extend(sel.selection_set.selections)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                seen.add(sel.name.value)
                frag = fragments.get(sel.name.value)
                if frag is not None:
                    todo.extend(frag.selection_set.selections)
        return out, aliases

    roots = most_aliases = selections = 0
    for op in document.definitions:
        if not isinstance(op, OperationDefinitionNode):
            continue
        stack: list[tuple[SelectionSetNode, int]] = [(op.selection_set, 1)]
        while stack:
            selection_set, depth = stack.pop()
            if depth > MAX_DEPTH:
                return f"Query exceeds maximum depth of {MAX_DEPTH}"
            found, aliases = fields_of(selection_set)
            for f in found:
                roots += depth == 1
                if f.selection_set is not None:
                    stack.append((f.selection_set, depth + 1))
                selections += 1
                if selections > MAX_SELECTIONS:
                    return f"Query exceeds maximum total selections of {MAX_SELECTIONS}"
            most_aliases = max(most_aliases, aliases)
    for what, env, value in (
        ("root fields", "MLFLOW_SERVER_GRAPHQL_MAX_ROOT_FIELDS", roots),
        ("aliases", "MLFLOW_SERVER_GRAPHQL_MAX_ALIASES", most_aliases),
    ):
        limit = _limit(env, 10)
        if value > limit:
            return (
                f"GraphQL queries should have at most {limit} {what}, got {value} {what}. "
                f"To increase the limit, set the {env} environment variable."
            )
    return None

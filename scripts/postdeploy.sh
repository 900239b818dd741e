#!/bin/sh
# azd postdeploy hook: wire Event Grid to the functions that were just deployed.
#
# Two subscriptions cannot be part of infra/main.bicep: Event Grid validates a
# destination when the subscription is created, and these destinations exist
# only once the code runs (the blob extension's webhook and its system key; the
# azureml_event function). Both are created here, idempotently: `az ...
# event-subscription create` is a PUT, so running the hook again replaces each
# subscription with the same definition (and a fresh key).
#
# 1. Storage system topic -> the blob trigger (dataset_uploaded, Event Grid source):
#    BlobCreated in the dataset container only. The app writes its own outputs
#    (splits, reports) into another container (WORK_CONTAINER), which the
#    subject filter leaves out; an advanced filter (subject StringNotBeginsWith
#    .../blobs/_autopilot/) also keeps out the app's prefix in the dataset
#    container (WORK_CONTAINER set to it, or blobs from older versions). The
#    trigger skips those too: the filters save invocations, they are not
#    needed for correctness.
# 2. Azure ML workspace system topic -> the azureml_event function
#    (RunCompleted, RunStatusChanged; Event Grid schema, as the trigger expects).
#
# Values come from `azd env get-values` (outputs of infra/main.bicep), or from
# the environment when azd is not there. Needs the Azure CLI, logged in.
# POSTDEPLOY_ATTEMPTS / POSTDEPLOY_WAIT_SECONDS tune how long to wait for the
# host (default 30 x 10 s).
set -eu

values_file=$(mktemp)
trap 'rm -f "$values_file"' EXIT INT TERM
if command -v azd >/dev/null 2>&1; then
    azd env get-values >"$values_file" 2>/dev/null || :
fi

# azd_value NAME: NAME's value from `azd env get-values` (NAME="value"), else
# from the environment; fails naming NAME when neither has it.
azd_value() {
    found=$(sed -n "s/^$1=\"\\(.*\\)\"\$/\\1/p" "$values_file" | tail -n 1)
    if [ -z "$found" ]; then
        eval "found=\${$1:-}"
    fi
    if [ -z "$found" ]; then
        echo "postdeploy: $1 is not set (an output of infra/main.bicep; run azd provision)" >&2
        exit 1
    fi
    printf '%s' "$found"
}

say() {
    printf 'postdeploy: %s\n' "$*"
}

command -v az >/dev/null 2>&1 || {
    echo "postdeploy: the Azure CLI (az) is required: https://aka.ms/azure-cli" >&2
    exit 1
}

subscription=$(azd_value AZURE_SUBSCRIPTION_ID)
resource_group=$(azd_value AZURE_RESOURCE_GROUP)
app=$(azd_value AZURE_FUNCTION_APP_NAME)
app_id=$(azd_value AZURE_FUNCTION_APP_ID)
container=$(azd_value DATASET_CONTAINER)
storage_topic=$(azd_value STORAGE_SYSTEM_TOPIC_NAME)
ml_topic=$(azd_value AZUREML_EVENTS_SYSTEM_TOPIC)
ml_topic_group=$(azd_value AZUREML_EVENTS_SYSTEM_TOPIC_RESOURCE_GROUP)

attempts=${POSTDEPLOY_ATTEMPTS:-30}
pause=${POSTDEPLOY_WAIT_SECONDS:-10}

# The blobs_extension system key exists once the host has started with the
# Event Grid-source blob trigger loaded; right after a deployment the host
# may still be starting (listing keys then fails), so wait for it.
say "waiting for the blob extension key of $app"
url="https://$app.azurewebsites.net"
blobs_key=""
try=1
while [ "$try" -le "$attempts" ]; do
    # Any request wakes a Flex app that has scaled to zero.
    if command -v curl >/dev/null 2>&1; then
        curl --silent --output /dev/null --max-time 30 "$url/api/health" || :
    fi
    blobs_key=$(az functionapp keys list --subscription "$subscription" \
        --resource-group "$resource_group" --name "$app" \
        --query systemKeys.blobs_extension --output tsv 2>/dev/null || :)
    if [ -n "$blobs_key" ]; then
        break
    fi
    say "no blobs_extension key yet (try $try of $attempts); retrying in ${pause}s"
    try=$((try + 1))
    sleep "$pause"
done
if [ -z "$blobs_key" ]; then
    echo "postdeploy: $app has no blobs_extension system key after $attempts tries:" \
        "is dataset_uploaded indexed (DATASET_TRIGGER_SOURCE=EventGrid)? Run 'azd deploy' again." >&2
    exit 1
fi

blobs="/blobServices/default/containers/$container/blobs/"
say "subscribing $app to BlobCreated in $container (system topic $storage_topic)"
az eventgrid system-topic event-subscription create --subscription "$subscription" \
    --resource-group "$resource_group" --system-topic-name "$storage_topic" \
    --name "$app-datasets" \
    --endpoint-type webhook \
    --endpoint "$url/runtime/webhooks/blobs?functionName=Host.Functions.dataset_uploaded&code=$blobs_key" \
    --included-event-types Microsoft.Storage.BlobCreated \
    --subject-begins-with "$blobs" \
    --advanced-filter subject StringNotBeginsWith "${blobs}_autopilot/" \
    --output none

# An AzureFunction destination is validated against the function's metadata:
# wait until the host lists azureml_event.
say "waiting for the azureml_event function of $app"
try=1
until az functionapp function show --subscription "$subscription" \
    --resource-group "$resource_group" --name "$app" \
    --function-name azureml_event --output none 2>/dev/null; do
    if [ "$try" -ge "$attempts" ]; then
        echo "postdeploy: $app does not list the azureml_event function after $attempts tries" >&2
        exit 1
    fi
    say "azureml_event not listed yet (try $try of $attempts); retrying in ${pause}s"
    try=$((try + 1))
    sleep "$pause"
done

say "subscribing azureml_event to Azure ML run events (system topic $ml_topic)"
az eventgrid system-topic event-subscription create --subscription "$subscription" \
    --resource-group "$ml_topic_group" --system-topic-name "$ml_topic" \
    --name "$app-azureml-runs" \
    --endpoint-type azurefunction \
    --endpoint "$app_id/functions/azureml_event" \
    --included-event-types Microsoft.MachineLearningServices.RunCompleted \
    Microsoft.MachineLearningServices.RunStatusChanged \
    --event-delivery-schema eventgridschema \
    --output none

say "done: drop a .jsonl file into container '$container' to start a run"

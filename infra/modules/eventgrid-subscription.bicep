// Event Grid subscription: "blob created in the requests container" -> the blob extension
// webhook of the Function App, which runs the blob-triggered function `submit_from_blob`:
//
//   https://<app default host name>/runtime/webhooks/blobs?functionName=Host.Functions.<function>&code=<key>
//
// <key> is the app's `blobs_extension` system key. The host creates it the first time it starts
// with the Event Grid blob trigger loaded, i.e. only after the code is deployed; and Event Grid
// validates the endpoint (a handshake the blob extension answers) when the subscription is
// created. So this module is not part of main.bicep: azd's postdeploy hook
// (infra/hooks/postdeploy.py) deploys it after every `azd deploy` / `azd up`, once the key exists
// (deploying it again is harmless: the same subscription is updated in place). The key is read
// here with listKeys on the app's host, so it never passes through a command line or a log.

@description('Name of the Event Grid system topic on the storage account.')
param systemTopicName string

@description('Event subscription name.')
param name string = 'parallelrun-requests-to-submit-from-blob'

@description('Function App name.')
param functionAppName string

@description('Name of the blob-triggered function (Event Grid source) that submits jobs.')
param functionName string = 'submit_from_blob'

@description('Blob container whose new blobs are job requests.')
param requestsContainerName string

@description('Event Grid retry: delivery attempts and time-to-live before an event is dropped.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource appHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: app
  name: 'default'
}

var blobsExtensionKey = appHost.listKeys().systemKeys.blobs_extension
var endpointUrl = 'https://${app.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}'

resource eventSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: name
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: endpointUrl
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${requestsContainerName}/blobs/'
      enableAdvancedFilteringOnArrays: true
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
  }
}

output id string = eventSubscription.id

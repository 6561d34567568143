// The Flex Consumption plan and the Function App (Linux, Python) that hosts ParallelRun's
// functions: the HTTP API, the planner, the batch workers, the finalizer and the Event Grid
// based blob trigger `submit_from_blob`.
//
// Storage is reached with the user-assigned identity only (AzureWebJobsStorage__* settings, no
// connection string). Flex Consumption takes its runtime, scale and deployment source from
// `functionAppConfig`; it rejects the settings that older plans used for the same purpose
// (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE, ...), so they
// are deliberately absent here.

@description('Azure region (one that offers Flex Consumption).')
param location string

@description('Function App name (globally unique; becomes part of its host name).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Client id of that identity (for AzureWebJobsStorage__clientId and telemetry).')
param identityClientId string

@description('Storage account name.')
param storageAccountName string

@description('Blob, queue and table service endpoints of the storage account (with trailing slash).')
param blobEndpoint string
param queueEndpoint string
param tableEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights component name (in this resource group).')
param applicationInsightsName string

@description('Python version of the app.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on the number of instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('ParallelRun resource names, passed to the app as PARALLELRUN_* settings.')
param resourceNames object

@description('Extra app settings, as [{ name: ..., value: ... }], appended to the defaults.')
param extraAppSettings array = []

param tags object = {}

var baseAppSettings = [
  // Host storage, identity-based (no keys). Service URIs are given explicitly so that the
  // host, the blob trigger and ParallelRun's own clients resolve the same endpoints.
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: blobEndpoint
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: queueEndpoint
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: tableEndpoint
  }
  // The identity DefaultAzureCredential picks in ParallelRun's own storage clients.
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }

  // Telemetry, Entra-authenticated (local auth is disabled on the component).
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }

  // ParallelRun resource names (read by shared/settings.py and by the trigger declarations).
  {
    name: 'PARALLELRUN_PLAN_QUEUE'
    value: resourceNames.planQueue
  }
  {
    name: 'PARALLELRUN_BATCH_QUEUE'
    value: resourceNames.batchQueue
  }
  {
    name: 'PARALLELRUN_FINALIZE_QUEUE'
    value: resourceNames.finalizeQueue
  }
  {
    name: 'PARALLELRUN_REQUESTS_CONTAINER'
    value: resourceNames.requestsContainer
  }
  {
    name: 'PARALLELRUN_SYSTEM_CONTAINER'
    value: resourceNames.systemContainer
  }
  {
    name: 'PARALLELRUN_OUTPUT_CONTAINER'
    value: resourceNames.outputContainer
  }
  {
    name: 'PARALLELRUN_LEDGER_TABLE'
    value: resourceNames.ledgerTable
  }
  {
    name: 'PARALLELRUN_INDEX_TABLE'
    value: resourceNames.indexTable
  }
  {
    name: 'PARALLELRUN_MODELS_TABLE'
    value: resourceNames.modelsTable
  }

  // When the sweep (functions/sweep.py) looks for jobs nothing drives any more: NCRONTAB, UTC.
  {
    name: 'PARALLELRUN_SWEEP_SCHEDULE'
    value: '0 */1 * * * *'
  }
]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: concat(baseAppSettings, extraAppSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

output id string = app.id
output name string = app.name
output defaultHostName string = app.properties.defaultHostName
output planId string = plan.id

"""The HTTP service: versioned JSON routes under /v1 (bearer tokens, roles, partner scope,
problem+json errors), /metrics, and the server-rendered dashboard under /dashboard.

`app.create_app` builds it: `service.Service` holds what the routes share (the workspace, its
store, and the pipeline the engine built for it), `routes/` has one router module per resource,
`dashboard/` one module per page, and `errors` turns every failure into a problem response.
`contract` completes the OpenAPI document, `paging` gives every list its cursor and `Link`,
`docs` serves `/docs` from the package, and `client` is a thin typed client of the API.
"""

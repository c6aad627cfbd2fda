-- key-auth's configuration: where the key is looked for.
return {
    fields = {
        { key_names = { type = "array", elements = { type = "string", match = "^[%w%-_]+$", len_max = 64 },
            default = { "apikey" }, len_min = 1, len_max = 16,
            description = "Header or query argument names that carry the key, tried in order." } },
        { hide_credentials = { type = "boolean", default = false,
            description = "Remove the key from the request before proxying it." } },
        { key_in_header = { type = "boolean", default = true, description = "Look for the key in headers." } },
        { key_in_query = { type = "boolean", default = true, description = "Look for the key in the query string." } },
    },
}

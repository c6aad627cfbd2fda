-- test-metrics' configuration: a prefix for its label values.
return {
    fields = {
        { prefix = { type = "string", default = "", len_max = 16, description = "Label value prefix." } },
    },
}

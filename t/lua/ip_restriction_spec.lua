-- gateway.plugins.ip_restriction: rules are read as clients are, IPv4-mapped IPv6
-- meaning IPv4 (the matching itself is the Rust module's, tested in Rust).
local ip = require "gateway.plugins.ip_restriction"

describe("ip-restriction rule normalization", function()
    it("reads an IPv4-mapped address or network as IPv4", function()
        assert.same({ "127.0.0.2" }, ip.normalize({ "::ffff:127.0.0.2" }))
        assert.same({ "127.0.0.2" }, ip.normalize({ "::FFFF:7f00:2" }))
        assert.same({ "127.0.0.2" }, ip.normalize({ "0:0:0:0:0:ffff:127.0.0.2/128" }))
        assert.same({ "10.0.0.0/8" }, ip.normalize({ "::ffff:10.0.0.0/104" }))
        assert.same({ "192.168.1.0/24" }, ip.normalize({ "::ffff:c0a8:100/120" }))
        assert.same({ "0.0.0.0/0" }, ip.normalize({ "::ffff:0:0/96" }))
    end)

    it("lets an IPv6 network that holds every mapped address cover IPv4 too", function()
        assert.same({ "::/0", "0.0.0.0/0" }, ip.normalize({ "::/0" }))
        assert.same({ "::/80", "0.0.0.0/0" }, ip.normalize({ "::/80" }))
        assert.same({ "::/64", "0.0.0.0/0" }, ip.normalize({ "::/64" }))
        assert.same({ "0:0:0:0:0:fffe::/95", "0.0.0.0/0" }, ip.normalize({ "0:0:0:0:0:fffe::/95" }))
        assert.same({ "::fffe:0:0/96" }, ip.normalize({ "::fffe:0:0/96" }))
        assert.same({ "::/81" }, ip.normalize({ "::/81" }))
    end)

    it("leaves other rules alone", function()
        assert.same({ "127.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32", "all", "::ffff:0:0:0/96" },
            ip.normalize({ "127.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32", "all", "::ffff:0:0:0/96" }))
        assert.same({}, ip.normalize(nil))
    end)
end)

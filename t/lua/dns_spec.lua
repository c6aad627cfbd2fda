-- gateway.dns: what it reads from files and settings (the resolution itself runs
-- against a real DNS server in t/dns.rs).
package.preload["ngx.semaphore"] = function() return {} end
local dns = require "gateway.dns"

describe("gateway.dns", function()
    it("reads nameservers as address[:port], IPv6 in brackets or bare", function()
        assert.same({ "127.0.0.1", 53 }, dns.parse_nameserver("127.0.0.1"))
        assert.same({ "10.0.0.2", 5353 }, dns.parse_nameserver("10.0.0.2:5353"))
        assert.same({ "[::1]", 53 }, dns.parse_nameserver("::1"))
        assert.same({ "[fe80::1]", 5300 }, dns.parse_nameserver("[fe80::1]:5300"))
        for _, bad in ipairs({ "dns.example", "127.0.0.1:0", "127.0.0.1:65536", "256.0.0.1",
                               "1.2.3", "[::1]:x", "", "127.0.0.1:53:53" }) do
            assert.is_nil(dns.parse_nameserver(bad), bad)
        end
    end)

    it("takes resolv.conf's nameservers (three at most) and options, the local one when none", function()
        local servers, timeout, attempts = dns.parse_resolv_conf(table.concat({
            "# comment", "search example.com", "nameserver 10.0.0.1", "nameserver fe80::1%eth0",
            "nameserver bogus", "nameserver 10.0.0.3", "nameserver 10.0.0.4",
            "options ndots:2 timeout:3 attempts:4",
        }, "\n"))
        assert.same({ { "10.0.0.1", 53 }, { "[fe80::1]", 53 }, { "10.0.0.3", 53 } }, servers)
        assert.equal(3, timeout)
        assert.equal(4, attempts)
        assert.same({ { "127.0.0.1", 53 } }, (dns.parse_resolv_conf("search x\n")))
        assert.same({ { "127.0.0.1", 53 } }, (dns.parse_resolv_conf(nil)))
    end)

    it("reads a hosts file: IPv4 before IPv6, the first line wins, comments and case ignored", function()
        local hosts = dns.parse_hosts(table.concat({
            "127.0.0.1 localhost", "::1 localhost ip6-localhost",
            "# 10.9.9.9 commented.test", "10.0.0.1  Api.Test  api-alias  # trailing",
            "10.0.0.2 api.test", "fe80::5%eth0 six.test", "not-an-address name.test", "",
        }, "\n"))
        assert.same({ "127.0.0.1" }, hosts["localhost"])
        assert.same({ "[::1]" }, hosts["ip6-localhost"])
        assert.same({ "10.0.0.1" }, hosts["api.test"])
        assert.same({ "10.0.0.1" }, hosts["api-alias"])
        assert.same({ "[fe80::5]" }, hosts["six.test"])
        assert.is_nil(hosts["commented.test"])
        assert.is_nil(hosts["name.test"])
    end)

    it("tells address literals from names", function()
        for _, a in ipairs({ "127.0.0.1", "999.1.1.1", "::1", "fe80::1" }) do
            assert.is_true(dns.is_address(a), a)
        end
        for _, a in ipairs({ "::", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4", "1::", "a:b::c" }) do
            assert.is_true(dns.is_address(a), a)
        end
        for _, n in ipairs({ "localhost", "api.test", "1.2.3", "a:b", "1:2:3:4:5:6:7:8:9", "1::2::3",
                             ":1:2:3:4:5:6:7", "12345::1", "::1.2.3.256", "127.0.0.1:53:53" }) do
            assert.is_false(dns.is_address(n), n)
        end
    end)
end)

package embedded

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
)

// authKeys are the top-level settings an AuthFile may hold: who may connect
// and what they may do. Everything else (ports, cluster, JetStream) comes
// from Config, and a file that sets it is refused rather than half-read.
var authKeys = []string{"authorization", "accounts", "no_auth_user", "system_account"}

// authOptions are the authentication and authorization settings read from an
// AuthFile, in nats-server's own terms.
type authOptions struct {
	users         []*server.User
	nkeys         []*server.NkeyUser
	accounts      []*server.Account
	username      string
	password      string
	token         string
	authTimeout   float64
	noAuthUser    string
	systemAccount string
}

// loadAuthFile reads path with nats-server's own parser.
func loadAuthFile(path string) (*authOptions, error) {
	m, err := conf.ParseFileWithChecks(path)
	if err != nil {
		return nil, invalid("AuthFile %s: %v", path, err)
	}
	var extra []string
	for k := range m {
		if !slices.Contains(authKeys, strings.ToLower(k)) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, invalid("AuthFile %s sets %s: it may only hold %s — ports, cluster and JetStream come from the coordinator's own settings",
			path, strings.Join(extra, ", "), strings.Join(authKeys, ", "))
	}
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, invalid("AuthFile %s: %v", path, err)
	}
	a := &authOptions{
		users: o.Users, nkeys: o.Nkeys, accounts: o.Accounts,
		username: o.Username, password: o.Password, token: o.Authorization,
		authTimeout: o.AuthTimeout, noAuthUser: o.NoAuthUser, systemAccount: o.SystemAccount,
	}
	if len(a.users) == 0 && len(a.nkeys) == 0 && a.username == "" && a.token == "" {
		return nil, invalid("AuthFile %s defines no user: add an authorization { users: [...] } block or users in accounts { }", path)
	}
	return a, nil
}

func (a *authOptions) apply(o *server.Options) {
	o.Users, o.Nkeys, o.Accounts = a.users, a.nkeys, a.accounts
	o.Username, o.Password, o.Authorization = a.username, a.password, a.token
	o.NoAuthUser, o.SystemAccount = a.noAuthUser, a.systemAccount
	if a.authTimeout > 0 {
		o.AuthTimeout = a.authTimeout
	}
}

func describeAuth(c Config) string {
	switch {
	case c.AuthFile != "":
		return fmt.Sprintf("file %s", c.AuthFile)
	case c.Token != "":
		return "token"
	case c.User != "":
		return "user/password"
	case len(c.NKeys) > 0:
		return "nkeys"
	case c.VerifyClients:
		return "client certificates"
	}
	return "none"
}

package recipe

import (
	"crypto/sha256"
	"strings"

	"github.com/google/uuid"
)

// namespace makes recipe IDs imsbuild's own UUID space, apart from image IDs.
const namespace = "0b6f4b1e-3c1d-5a7e-8f2a-9d4c6e8b1a70"

// RecipeID derives a stable IMS recipe id (a UUID) from the recipe's name and
// the sha256 of its archive ("sha256:<hex>" or bare hex, any case), so
// republishing the same recipe keeps its id.
func RecipeID(name, tgzSHA256 string) string {
	d := strings.TrimPrefix(strings.ToLower(tgzSHA256), "sha256:")
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(d))
	return uuid.NewSHA1(uuid.MustParse(namespace), h.Sum(nil)).String()
}

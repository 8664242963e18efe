// Package recipe packs an IMS recipe (a kiwi-ng description directory) into
// the recipe.tgz IMS stores in bucket "ims" under recipes/<id>/recipe.tgz,
// reproducibly: the same tree gives the same bytes whatever its mtimes,
// owners or the order the file system lists it in, so the archive's sha256
// and the recipe id derived from it (RecipeID) are stable.
package recipe

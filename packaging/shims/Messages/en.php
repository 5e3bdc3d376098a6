<?php
/* MikoPBX translations of the featpkg module (English). */
return [
    'BreadcrumbModuleFeatpkg' => 'featpkg recipes',
    'SubHeaderModuleFeatpkg' => 'Reversible PBX recipes: choose features, set their parameters, preview and apply the change',
];

<?php
/* MikoPBX translations of the featpkg module (Russian). */
return [
    'BreadcrumbModuleFeatpkg' => 'Рецепты featpkg',
    'SubHeaderModuleFeatpkg' => 'Обратимые рецепты для АТС: выберите функции, задайте параметры, просмотрите и примените изменения',
];
